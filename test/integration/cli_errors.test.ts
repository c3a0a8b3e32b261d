import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { mkdir, readdir, readFile, stat, writeFile } from 'node:fs/promises';
import { userInfo } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';

import { processesOf } from '../../pkg/netns/procfs.js';
import { TestNode } from '../lib/agent.js';

// Bad input to the real CLI: each case is one clear message naming the
// problem (and the fix where there is one), a non-zero exit, and nothing left
// behind — no node namespace, no process, no lock.

const me = userInfo();

async function leftovers(node: TestNode): Promise<string[]> {
  const out: string[] = [];
  for (const p of await processesOf(me.uid)) {
    try {
      if (readFileSync(`/proc/${p.pid}/cmdline`, 'utf8').includes(node.dir)) out.push(`${p.comm} (pid ${p.pid})`);
    } catch {
      // Gone.
    }
  }
  let files: string[] = [];
  try {
    files = await readdir(node.runtimeDir);
  } catch {
    files = [];
  }
  for (const f of files) if (['node-namespace.json', 'rootlesskit', 'agent.pid', 'runtime.pid', 'cri.sock'].includes(f)) out.push(f);
  return out;
}

describe('usernode CLI: bad input fails clearly and leaves nothing behind', () => {
  let node: TestNode;

  before(async () => {
    node = await TestNode.create();
  });

  after(async () => {
    await node.destroy();
  });

  async function config(name: string, text: string): Promise<string> {
    const p = join(node.dir, name);
    await writeFile(p, text);
    return p;
  }

  it('rejects an unknown flag, naming it', async () => {
    const r = await node.usernode(['run', '--no-such-flag']);
    assert.equal(r.code, 2);
    assert.match(r.stderr, /--no-such-flag/);
    assert.deepEqual(await leftovers(node), []);
  });

  it('rejects an unknown command with the usage', async () => {
    const r = await node.usernode(['launch']);
    assert.equal(r.code, 2);
    assert.match(r.stderr, /unknown command "launch"/);
    assert.match(r.stderr, /usage: usernode/);
  });

  it('rejects a missing config file, naming it', async () => {
    const missing = join(node.dir, 'nope.yaml');
    const r = await node.usernode(['run', '--config', missing]);
    assert.equal(r.code, 1);
    assert.match(r.stderr, new RegExp(`${missing} does not exist`));
    assert.deepEqual(await leftovers(node), []);
  });

  it('rejects a malformed config file with the line', async () => {
    const p = await config('bad.yaml', 'network:\n  mtu: 1500\n   podCIDR: [\n');
    const r = await node.usernode(['run', '--config', p]);
    assert.equal(r.code, 1);
    assert.match(r.stderr, new RegExp(`${p} is not valid YAML at line \\d+`));
    assert.deepEqual(await leftovers(node), []);
  });

  it('rejects an unknown or out-of-range setting, naming it', async () => {
    const p = await config('unknown.yaml', 'network:\n  mtu: 100\n');
    const r = await node.usernode(['run', '--config', p]);
    assert.equal(r.code, 1);
    assert.match(r.stderr, /network\.mtu must be an integer between 1280 and 65520, got 100/);
    const q = await config('unknown2.yaml', 'podCidr: 10.0.0.0/8\n');
    const r2 = await node.usernode(['run', '--config', q]);
    assert.match(r2.stderr, /unknown setting "podCidr"/);
  });

  it('refuses to start without rootlesskit, printing the install command', async () => {
    const p = await config('norootlesskit.yaml', 'tools:\n  rootlesskit: /nonexistent/rootlesskit\n');
    const r = await node.usernode(['run', '--config', p]);
    assert.equal(r.code, 1);
    assert.match(r.stderr, /rootlesskit not found at \/nonexistent\/rootlesskit/);
    assert.match(r.stderr, /sudo apt-get install -y rootlesskit/);
    assert.deepEqual(await leftovers(node), []);
  });

  it('usernode check names each missing prerequisite with its fix and exits non-zero', async () => {
    const p = await config('norunc.yaml', 'tools:\n  runc: /nonexistent/runc\n  cniBinDir: /nonexistent/cni\n');
    const r = await node.usernode(['check', '--config', p]);
    assert.equal(r.code, 1);
    assert.match(r.stdout, /FAIL {2}runc: runc not found at \/nonexistent\/runc/);
    assert.match(r.stdout, /FAIL {2}CNI plugins: missing in \/nonexistent\/cni: bridge, host-local, loopback, portmap/);
    assert.match(r.stdout, /sudo apt-get install -y runc containernetworking-plugins/);
    const ok = await node.usernode(['check']);
    assert.equal(ok.code, 0, ok.stdout);
    assert.match(ok.stdout, /All prerequisites are met/);
  });

  it('refuses a socket path that exists and is not a socket, leaving the file alone', async () => {
    const sock = join(node.dir, 'not-a-socket');
    await writeFile(sock, 'precious\n');
    const r = await node.usernode(['run', '--cri-socket', sock]);
    assert.equal(r.code, 1);
    assert.match(r.stderr, new RegExp(`${sock} exists and is not a socket`));
    assert.equal(await readFile(sock, 'utf8'), 'precious\n');
    assert.deepEqual(await leftovers(node), []);
  });

  it('undoes a half-made node namespace when rootlesskit fails midway', async () => {
    // slirp4netns that exists but fails: rootlesskit starts, then gives up.
    const fake = join(node.dir, 'bin');
    await mkdir(fake, { recursive: true });
    await writeFile(join(fake, 'slirp4netns'), '#!/bin/sh\necho "fake slirp4netns refuses" >&2\nexit 1\n', { mode: 0o755 });
    const p = await config('badslirp.yaml', `metricsAddress: "127.0.0.1:0"\ntools:\n  slirp4netns: ${join(fake, 'slirp4netns')}\n`);
    const r = await node.usernode(['run', '--config', p]);
    assert.equal(r.code, 1);
    assert.match(r.stderr, /could not create the node namespace/);
    assert.match(r.stderr, /usernode check/);
    assert.deepEqual(await leftovers(node), []);
    // The lock was released: a correct run afterwards is not refused as a second instance.
    await assert.rejects(stat(join(node.runtimeDir, 'agent.pid')));
  });

  it('usernode enter without a running node says how to start one', async () => {
    const r = await node.usernode(['enter', '--', 'true']);
    assert.equal(r.code, 1);
    assert.match(r.stderr, /node namespace is not running; start it with "usernode run"/);
  });

  it('usernode stop on a stopped node succeeds and says so', async () => {
    const r = await node.usernode(['stop']);
    assert.equal(r.code, 0, r.stderr);
    assert.match(r.stdout, /not running/);
  });
});
