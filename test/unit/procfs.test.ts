import assert from 'node:assert/strict';
import { type ChildProcess, spawn } from 'node:child_process';
import { once } from 'node:events';
import { readFile, mkdtemp, rm, symlink } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';

import {
  descendants,
  isAlive,
  namespaceOf,
  type ProcessInfo,
  processesOf,
  startTimeOf,
  terminate,
} from '../../pkg/netns/procfs.js';

let root: string;
const children: ChildProcess[] = [];

before(async () => {
  root = await mkdtemp(join(tmpdir(), 'usernode-procfs-'));
});

after(async () => {
  for (const c of children) if (c.exitCode === null && c.signalCode === null) c.kill('SIGKILL');
  await rm(root, { recursive: true, force: true });
});

/** A node child running `js`; resolves once it printed its first line (so its handlers are installed). */
async function child(js: string, file: string = process.execPath): Promise<{ proc: ChildProcess; pid: number; line: string }> {
  const proc = spawn(file, ['-e', js], { stdio: ['ignore', 'pipe', 'inherit'] });
  children.push(proc);
  const [chunk] = (await once(proc.stdout!, 'data')) as [Buffer];
  assert.ok(proc.pid !== undefined);
  return { proc, pid: proc.pid, line: chunk.toString().trim() };
}

const stateOf = async (pid: number): Promise<string | undefined> => {
  try {
    const s = await readFile(`/proc/${pid}/stat`, 'utf8');
    return s.slice(s.lastIndexOf(')') + 2).split(' ')[0];
  } catch {
    return undefined;
  }
};

describe('isAlive', () => {
  test('this process is alive', () => {
    assert.equal(isAlive(process.pid), true);
  });

  test('pids that cannot be processes are not alive', () => {
    for (const pid of [0, -1, 1.5, Number.NaN]) assert.equal(isAlive(pid), false, String(pid));
  });

  test('a child that exited is not alive', async () => {
    const proc = spawn(process.execPath, ['-e', 'process.exit(0)'], { stdio: 'ignore' });
    assert.ok(proc.pid !== undefined);
    await once(proc, 'exit');
    assert.equal(isAlive(proc.pid), false);
  });

  test('a zombie (exited, not reaped by its parent) is not alive', { timeout: 10000 }, async () => {
    // sh starts a short-lived job, then becomes a process that never waits for it.
    const { pid, line } = await child(
      `const { spawn } = require('child_process');` +
        `const z = spawn('/bin/sh', ['-c', 'sleep 0 & echo $!; exec sleep 30'], { stdio: ['ignore', 'pipe', 'ignore'] });` +
        `z.stdout.once('data', (d) => process.stdout.write(String(d)));` +
        `setInterval(() => {}, 1000);`,
    );
    const zombie = Number(line);
    try {
      assert.ok(Number.isInteger(zombie) && zombie > 0, `zombie pid ${line}`);
      const end = Date.now() + 5000;
      while ((await stateOf(zombie)) !== 'Z') {
        assert.ok(Date.now() < end, `pid ${zombie} never became a zombie (state ${await stateOf(zombie)})`);
        await new Promise((r) => setTimeout(r, 20));
      }
      // kill(pid, 0) still succeeds on a zombie; isAlive must look further.
      assert.doesNotThrow(() => process.kill(zombie, 0));
      assert.equal(isAlive(zombie), false);
      assert.equal(isAlive(pid), true);
    } finally {
      // The zombie's parent (the `sleep 30`, a child of our child) goes first, then our child.
      const sleeper = (await processesOf(process.getuid?.() ?? 0)).find((p) => p.ppid === pid);
      if (sleeper) process.kill(sleeper.pid, 'SIGKILL');
      process.kill(pid, 'SIGKILL');
    }
  });
});

describe('startTimeOf', () => {
  test('is stable for this process and not later than a child started after it', async () => {
    const a = await startTimeOf(process.pid);
    const b = await startTimeOf(process.pid);
    assert.ok(a !== undefined && Number.isInteger(a) && a > 0, `start time ${a}`);
    assert.equal(a, b);
    const { proc, pid } = await child(`process.stdout.write('up\\n'); setInterval(() => {}, 1000);`);
    const c = await startTimeOf(pid);
    assert.ok(c !== undefined && c >= a, `child ${c} vs self ${a}`);
    proc.kill('SIGKILL');
  });

  test('parses after the last parenthesis when the command name holds spaces and parentheses', { timeout: 10000 }, async () => {
    const odd = join(root, 'a) b (c');
    await symlink(process.execPath, odd);
    const js = `process.stdout.write('up\\n'); setInterval(() => {}, 1000);`;
    const plain = await child(js);
    const weird = await child(js, odd);
    const stat = await readFile(`/proc/${weird.pid}/stat`, 'utf8');
    assert.ok(stat.includes('(a) b (c)'), `comm in ${stat.slice(0, 40)}`);
    const p = await startTimeOf(plain.pid);
    const w = await startTimeOf(weird.pid);
    assert.ok(p !== undefined && w !== undefined);
    // Started within a second or so of each other (clock ticks are 100 Hz on Linux);
    // a misparse would read some other field, such as the virtual memory size.
    assert.ok(Math.abs(w - p) < 500, `start times ${p} and ${w}`);
    plain.proc.kill('SIGKILL');
    weird.proc.kill('SIGKILL');
  });

  test('is undefined for a pid that does not exist', async () => {
    const proc = spawn(process.execPath, ['-e', ''], { stdio: 'ignore' });
    await once(proc, 'exit');
    assert.equal(await startTimeOf(proc.pid!), undefined);
  });
});

describe('namespaceOf and processesOf', () => {
  test('namespaceOf names the user and net namespaces of this process', async () => {
    assert.match((await namespaceOf('self', 'user')) ?? '', /^user:\[\d+\]$/);
    assert.match((await namespaceOf(process.pid, 'net')) ?? '', /^net:\[\d+\]$/);
    assert.equal(await namespaceOf(-5, 'user'), undefined);
  });

  test('processesOf lists this process with its parent and user namespace', async () => {
    const uid = process.getuid?.() ?? 0;
    const me = (await processesOf(uid)).find((p) => p.pid === process.pid);
    assert.ok(me, 'this process is listed');
    assert.equal(me.ppid, process.ppid);
    assert.equal(me.uid, uid);
    assert.equal(me.userNs, await namespaceOf('self', 'user'));
    assert.ok(me.comm.length > 0);
  });
});

describe('descendants', () => {
  const p = (pid: number, ppid: number): ProcessInfo => ({ pid, ppid, uid: 1000, comm: `p${pid}`, userNs: 'user:[1]' });
  // Children listed before their parents, so one pass is not enough.
  const table = [p(40, 30), p(30, 20), p(20, 10), p(21, 10), p(10, 1), p(50, 1), p(60, 50), p(70, 99)];

  test('finds children, grandchildren and deeper, and nothing else', () => {
    assert.deepEqual([...descendants(table, new Set([10]))].sort((a, b) => a - b), [10, 20, 21, 30, 40]);
  });

  test('several roots', () => {
    assert.deepEqual([...descendants(table, new Set([30, 50]))].sort((a, b) => a - b), [30, 40, 50, 60]);
  });

  test('a root not in the table is kept; a leaf has no descendants', () => {
    assert.deepEqual([...descendants(table, new Set([12345]))], [12345]);
    assert.deepEqual([...descendants(table, new Set([40]))], [40]);
    assert.deepEqual([...descendants([], new Set([1]))], [1]);
  });

  test('does not change the roots set it is given', () => {
    const roots = new Set([20]);
    descendants(table, roots);
    assert.deepEqual([...roots], [20]);
  });
});

describe('terminate', () => {
  test('a child that ignores SIGTERM is SIGKILLed after the grace and nothing is left', { timeout: 10000 }, async () => {
    const { proc, pid } = await child(`process.on('SIGTERM', () => {}); process.stdout.write('armed\\n'); setInterval(() => {}, 1000);`);
    const exited = once(proc, 'exit');
    const t0 = Date.now();
    const left = await terminate([pid], 300);
    const took = Date.now() - t0;
    assert.deepEqual(left, []);
    assert.equal(isAlive(pid), false);
    const [, signal] = (await exited) as [number | null, NodeJS.Signals | null];
    assert.equal(signal, 'SIGKILL');
    assert.ok(took >= 250, `returned after ${took} ms, before the grace ended`);
    assert.ok(took < 300 + 2500, `returned after ${took} ms`);
  });

  test('a child that honours SIGTERM stops well within the grace', { timeout: 10000 }, async () => {
    const { proc, pid } = await child(`process.stdout.write('up\\n'); setInterval(() => {}, 1000);`);
    const exited = once(proc, 'exit');
    const t0 = Date.now();
    assert.deepEqual(await terminate([pid], 5000), []);
    assert.ok(Date.now() - t0 < 4000);
    const [, signal] = (await exited) as [number | null, NodeJS.Signals | null];
    assert.equal(signal, 'SIGTERM');
  });

  test('several pids at once, one already gone', { timeout: 10000 }, async () => {
    const a = await child(`process.on('SIGTERM', () => {}); process.stdout.write('armed\\n'); setInterval(() => {}, 1000);`);
    const b = await child(`process.stdout.write('up\\n'); setInterval(() => {}, 1000);`);
    const gone = spawn(process.execPath, ['-e', ''], { stdio: 'ignore' });
    await once(gone, 'exit');
    assert.deepEqual(await terminate([a.pid, b.pid, gone.pid!], 200), []);
    assert.equal(isAlive(a.pid), false);
    assert.equal(isAlive(b.pid), false);
  });

  test('an empty list returns at once', async () => {
    assert.deepEqual(await terminate([], 5000), []);
  });
});
