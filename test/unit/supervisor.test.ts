import assert from 'node:assert/strict';
import { getEventListeners } from 'node:events';
import { existsSync } from 'node:fs';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';

import type { LogFields, Logger } from '../../pkg/log/logger.js';
import { RuntimeSupervisor, type RuntimeSupervisorOptions } from '../../pkg/node/runtime_supervisor.js';

// The supervised "runtime half" is a tiny Node script run by this same node
// binary, so the tests need nothing from the host.

let root: string;
let n = 0;
/** Supervisors whose run() has not resolved, so a failed test cannot leave its child running. */
const running = new Map<RuntimeSupervisor, { stop: AbortController; done: Promise<void> }>();

before(async () => {
  root = await mkdtemp(join(tmpdir(), 'usernode-supervisor-'));
});

after(async () => {
  // A test that failed half-way leaves its supervisor running: stop it the
  // way the agent would (the supervisor SIGKILLs after its stopTimeoutMs).
  const left = [...running];
  for (const [, r] of left) r.stop.abort();
  const settled = Promise.allSettled(left.map(([, r]) => r.done));
  await Promise.race([settled, new Promise((r) => setTimeout(r, 3000).unref())]);
  // Still not done: it is waiting on a child that will not exit.
  for (const [sup] of running) if (sup.pid !== undefined && alive(sup.pid)) process.kill(sup.pid, 'SIGKILL');
  await settled;
  await rm(root, { recursive: true, force: true });
});

interface LogLine {
  level: 'debug' | 'info' | 'warn' | 'error';
  msg: string;
  fields: LogFields;
}

function recordingLogger(lines: LogLine[]): Logger {
  const log: Logger = {
    debug: (msg, fields = {}) => lines.push({ level: 'debug', msg, fields }),
    info: (msg, fields = {}) => lines.push({ level: 'info', msg, fields }),
    warn: (msg, fields = {}) => lines.push({ level: 'warn', msg, fields }),
    error: (msg, fields = {}) => lines.push({ level: 'error', msg, fields }),
    child: () => log,
  };
  return log;
}

function script(js: string): RuntimeSupervisorOptions['command'] {
  return { file: process.execPath, args: ['-e', js], env: { ...process.env, NODE_OPTIONS: '' } };
}

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}

/** Rejects when `p` takes longer than `ms`, so a hang fails with a reason. */
function within<T>(p: Promise<T>, ms: number, what: string): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const t = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`${what} took longer than ${ms} ms`)), ms);
  });
  return Promise.race([p, t]).finally(() => clearTimeout(timer));
}

async function waitFor(cond: () => boolean | Promise<boolean>, ms: number, what: string): Promise<void> {
  const end = Date.now() + ms;
  while (!(await cond())) {
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 20));
  }
}

function run(sup: RuntimeSupervisor, stop: AbortController): Promise<void> {
  const done = sup.run(stop.signal).finally(() => running.delete(sup));
  running.set(sup, { stop, done });
  return done;
}

const pidFile = (): string => join(root, `runtime-${++n}.pid`);

describe('RuntimeSupervisor', () => {
  test('a child that exits at once is restarted with a growing backoff', { timeout: 20000 }, async () => {
    const stop = new AbortController();
    const backoffs: number[] = [];
    const sleeps: number[] = [];
    const lines: LogLine[] = [];
    const sup = new RuntimeSupervisor({
      command: script('process.exit(3)'),
      log: recordingLogger(lines),
      pidFile: pidFile(),
      probe: async () => false,
      backoffMs: (k) => {
        backoffs.push(k);
        if (backoffs.length === 4) stop.abort();
        return 100 * k;
      },
      sleep: async (ms) => {
        sleeps.push(ms);
      },
    });
    await within(run(sup, stop), 15000, 'run()');
    assert.deepEqual(backoffs, [1, 2, 3, 4]);
    assert.deepEqual(sleeps, [100, 200, 300, 400]);
    assert.equal(sup.restarts, 4);
    const warns = lines.filter((l) => l.level === 'warn' && /restarting/.test(l.msg));
    assert.equal(warns.length, 4);
    assert.equal(warns[0]?.fields.exit, 'exit code 3');
    assert.equal(warns[0]?.fields.restartInMs, 100);
    const starts = lines.filter((l) => l.msg === 'runtime half started');
    assert.equal(starts.length, 4, 'started once plus once per restart until the abort');
  });

  test('a child that lived longer than healthyAfterMs restarts the backoff at 1', { timeout: 20000 }, async () => {
    const stop = new AbortController();
    const backoffs: number[] = [];
    const sup = new RuntimeSupervisor({
      command: script('setTimeout(() => process.exit(1), 150)'),
      log: recordingLogger([]),
      pidFile: pidFile(),
      probe: async () => false,
      healthyAfterMs: 50,
      backoffMs: (k) => {
        backoffs.push(k);
        if (backoffs.length === 3) stop.abort();
        return 0;
      },
      sleep: async () => {},
    });
    await within(run(sup, stop), 15000, 'run()');
    assert.deepEqual(backoffs, [1, 1, 1]);
  });

  test('a command that cannot be spawned counts as an exit and is retried', { timeout: 20000 }, async () => {
    const stop = new AbortController();
    const lines: LogLine[] = [];
    const backoffs: number[] = [];
    const sup = new RuntimeSupervisor({
      command: { file: join(root, 'no-such-binary'), args: [], env: {} },
      log: recordingLogger(lines),
      pidFile: pidFile(),
      probe: async () => false,
      backoffMs: (k) => {
        backoffs.push(k);
        if (backoffs.length === 2) stop.abort();
        return 0;
      },
      sleep: async () => {},
    });
    await within(run(sup, stop), 15000, 'run()');
    assert.deepEqual(backoffs, [1, 2]);
    const warn = lines.find((l) => l.level === 'warn');
    assert.match(String(warn?.fields.exit), /^spawn error: .*ENOENT/);
  });

  test('ready resolves once the probe answers; abort SIGTERMs the child and removes the pid file', { timeout: 20000 }, async () => {
    const stop = new AbortController();
    const marker = join(root, `term-${++n}`);
    const pf = pidFile();
    let probes = 0;
    let readyAt = -1;
    const sup = new RuntimeSupervisor({
      command: script(
        `process.on('SIGTERM', () => { require('fs').writeFileSync(${JSON.stringify(marker)}, 'SIGTERM'); process.exit(0); }); setInterval(() => {}, 1000);`,
      ),
      log: recordingLogger([]),
      pidFile: pf,
      probe: async () => ++probes >= 3,
      stopTimeoutMs: 10000,
    });
    let readyResolved = false;
    void sup.ready.then(() => {
      readyResolved = true;
      readyAt = probes;
    });
    const done = run(sup, stop);
    await within(sup.ready, 10000, 'ready');
    assert.equal(readyResolved, true);
    assert.equal(readyAt, 3, 'ready came with the first probe that answered, not before');
    const pid = sup.pid;
    assert.ok(pid !== undefined && alive(pid));
    await waitFor(() => existsSync(pf), 5000, 'the pid file');
    assert.equal((await readFile(pf, 'utf8')).trim(), String(pid));
    // The probe is not called again once ready.
    const probesAtReady = probes;
    await new Promise((r) => setTimeout(r, 200));
    assert.equal(probes, probesAtReady);

    // Let the child install its SIGTERM handler before stopping it.
    await new Promise((r) => setTimeout(r, 300));
    stop.abort();
    await within(done, 10000, 'run() after abort');
    assert.equal(await readFile(marker, 'utf8'), 'SIGTERM');
    assert.equal(alive(pid), false);
    assert.equal(existsSync(pf), false, 'pid file removed');
    assert.equal(sup.restarts, 0);
  });

  test('ready does not resolve while the probe says no', { timeout: 20000 }, async () => {
    const stop = new AbortController();
    let probes = 0;
    const sup = new RuntimeSupervisor({
      command: script('setInterval(() => {}, 1000)'),
      log: recordingLogger([]),
      pidFile: pidFile(),
      probe: async () => {
        probes++;
        return false;
      },
    });
    let ready = false;
    void sup.ready.then(() => (ready = true));
    const done = run(sup, stop);
    await waitFor(() => probes >= 3, 5000, 'three probes');
    assert.equal(ready, false);
    stop.abort();
    await within(done, 10000, 'run() after abort');
    assert.equal(ready, false);
  });

  test('a child that ignores SIGTERM is SIGKILLed after stopTimeoutMs', { timeout: 20000 }, async () => {
    const stop = new AbortController();
    const marker = join(root, `armed-${++n}`);
    const lines: LogLine[] = [];
    const pf = pidFile();
    const sup = new RuntimeSupervisor({
      command: script(
        `process.on('SIGTERM', () => {}); require('fs').writeFileSync(${JSON.stringify(marker)}, 'armed'); setInterval(() => {}, 1000);`,
      ),
      log: recordingLogger(lines),
      pidFile: pf,
      // Ready once the child has installed its handler.
      probe: async () => existsSync(marker),
      stopTimeoutMs: 400,
    });
    const done = run(sup, stop);
    await within(sup.ready, 10000, 'ready');
    const pid = sup.pid;
    assert.ok(pid !== undefined);
    const t0 = Date.now();
    stop.abort();
    await within(done, 10000, 'run() after abort');
    const took = Date.now() - t0;
    assert.ok(took >= 350, `run() resolved after ${took} ms, before stopTimeoutMs`);
    assert.equal(alive(pid), false);
    assert.ok(lines.some((l) => l.level === 'warn' && /did not stop in time/.test(l.msg)));
    assert.equal(existsSync(pf), false);
  });

  test('restarts do not pile up abort listeners on the signal', { timeout: 20000 }, async () => {
    const stop = new AbortController();
    const counts: number[] = [];
    const sup = new RuntimeSupervisor({
      command: script('process.exit(1)'),
      log: recordingLogger([]),
      pidFile: pidFile(),
      probe: async () => false,
      backoffMs: () => {
        counts.push(getEventListeners(stop.signal, 'abort').length);
        if (counts.length === 5) stop.abort();
        return 0;
      },
      sleep: async () => {},
    });
    await within(run(sup, stop), 15000, 'run()');
    assert.ok(Math.max(...counts) <= 2, `abort listeners at each restart: ${counts.join(', ')}`);
  });

  test('aborting before run() starts nothing', async () => {
    const stop = new AbortController();
    stop.abort();
    const lines: LogLine[] = [];
    const sup = new RuntimeSupervisor({
      command: script('setInterval(() => {}, 1000)'),
      log: recordingLogger(lines),
      pidFile: pidFile(),
      probe: async () => true,
    });
    await within(run(sup, stop), 5000, 'run()');
    assert.equal(sup.pid, undefined);
    assert.deepEqual(lines, []);
  });
});
