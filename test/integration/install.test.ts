import assert from 'node:assert/strict';
import { lstat, mkdir, readFile, symlink } from 'node:fs/promises';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';

import { exec, type Result, TestNode } from '../lib/agent.js';

// `usernode install` writes a systemd user unit that runs the agent and survives
// logout and reboot (with lingering); checked by systemd's own parser
// (systemd-analyze verify, which needs no running systemd). `usernode uninstall`
// removes it. Both are idempotent and say precisely what is wrong.

async function verify(node: TestNode, unit: string): Promise<Result> {
  const r = await exec('systemd-analyze', ['--user', 'verify', unit], { env: node.env, timeoutMs: 60000 }).catch((e: unknown) => {
    if ((e as NodeJS.ErrnoException).code === 'ENOENT') throw new Error('systemd-analyze was not found: install the Debian package systemd (scripts/host-setup.sh --tests does)');
    throw e;
  });
  if (r.code === 127 || /ENOENT/.test(r.stderr)) throw new Error(`systemd-analyze was not found: install the Debian package systemd (scripts/host-setup.sh --tests does): ${r.stderr}`);
  return r;
}

describe('usernode install / uninstall (systemd user unit)', () => {
  let node: TestNode;
  let unit: string;

  before(async () => {
    node = await TestNode.create();
    unit = join(node.dir, 'config', 'systemd', 'user', 'usernode.service');
  });
  after(async () => {
    await node?.destroy();
  });

  it('install writes a unit systemd accepts: the agent by absolute paths, Delegate=yes, KillMode=process, Restart=on-failure; and says how to start it and enable lingering', async () => {
    // A relative kubeconfig becomes absolute; a folder with a space and a % is quoted and escaped.
    const odd = join(node.dir, 'my 100% node');
    await mkdir(odd);
    const installed = await node.usernode(['install', '--kubeconfig', join(odd, 'node.kubeconfig'), '--node-name', 'box-1', '--log-level', 'debug']);
    assert.equal(installed.code, 0, installed.stderr);
    assert.match(installed.stdout, new RegExp(`wrote ${unit.replaceAll('.', '\\.')}`));
    assert.match(installed.stdout, /systemctl --user enable --now usernode/);
    assert.match(installed.stdout, /loginctl enable-linger \S+|Lingering is enabled/);
    const text = await readFile(unit, 'utf8');
    const execStart = /^ExecStart=(.*)$/m.exec(text)?.[1] ?? '';
    assert.ok(execStart.startsWith(`${process.execPath} /`), `ExecStart runs node by its absolute path: ${execStart}`);
    assert.match(execStart, /\/bin\/usernode run /);
    assert.match(execStart, /--kubeconfig "\/[^"]*\/my 100%% node\/node\.kubeconfig"/, 'quoted, % doubled');
    assert.match(execStart, /--node-name box-1/);
    for (const line of ['Delegate=yes', 'KillMode=process', 'Restart=on-failure', 'WantedBy=default.target']) assert.match(text, new RegExp(`^${line}$`, 'm'), line);
    assert.match(text, /^Environment="?PATH=/m, "the installing shell's PATH (the agent's tools)");
    assert.doesNotMatch(text, /^ExecStop=/m, 'stopping the unit must not stop the pods');
    const v = await verify(node, unit);
    assert.equal(v.code, 0, `systemd-analyze verify:\n${v.stderr}`);
    assert.equal(v.stderr.trim(), '', 'systemd-analyze verify has nothing to say about the unit');
  });

  it('install again: unchanged; with other flags: refused naming the file and --force; --force replaces it', async () => {
    const before = await readFile(unit, 'utf8');
    const odd = join(node.dir, 'my 100% node');
    const same = await node.usernode(['install', '--kubeconfig', join(odd, 'node.kubeconfig'), '--node-name', 'box-1', '--log-level', 'debug']);
    assert.equal(same.code, 0, same.stderr);
    assert.match(same.stdout, /installed already, unchanged/);
    const other = await node.usernode(['install', '--node-name', 'box-2']);
    assert.equal(other.code, 1);
    assert.match(other.stderr, new RegExp(`${unit.replaceAll('.', '\\.')} exists with other content.*--force`));
    assert.equal(await readFile(unit, 'utf8'), before, 'left as it was');
    const forced = await node.usernode(['install', '--node-name', 'box-2', '--force']);
    assert.equal(forced.code, 0, forced.stderr);
    assert.match(forced.stdout, /replaced/);
    assert.match(await readFile(unit, 'utf8'), /run --node-name box-2$/m);
    assert.equal((await verify(node, unit)).stderr.trim(), '');
  });

  it('a bad flag: refused naming it, nothing written', async () => {
    const bad = await node.usernode(['install', '--node-name', 'Not A Name', '--force']);
    assert.equal(bad.code, 1);
    assert.match(bad.stderr, /nodeName|--node-name/);
    assert.match(await readFile(unit, 'utf8'), /run --node-name box-2$/m, 'the unit is the one installed before');
    const unknown = await node.usernode(['install', '--bogus']);
    assert.equal(unknown.code, 2);
    assert.match(unknown.stderr, /unknown or malformed flag --bogus/);
  });

  it('uninstall removes the unit and its enable link; a second uninstall has nothing to do', async () => {
    const wants = join(node.dir, 'config', 'systemd', 'user', 'default.target.wants');
    await mkdir(wants, { recursive: true });
    await symlink(unit, join(wants, 'usernode.service'));
    const r = await node.usernode(['uninstall']);
    assert.equal(r.code, 0, r.stderr);
    assert.match(r.stdout, /removed .*usernode\.service/);
    await assert.rejects(lstat(unit), { code: 'ENOENT' });
    await assert.rejects(lstat(join(wants, 'usernode.service')), { code: 'ENOENT' });
    const again = await node.usernode(['uninstall']);
    assert.equal(again.code, 0, again.stderr);
    assert.match(again.stdout, /not installed/);
  });
});
