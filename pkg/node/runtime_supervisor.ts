import { spawn, type ChildProcess } from 'node:child_process';
import { rm, writeFile } from 'node:fs/promises';

import type { Logger } from '../log/logger.js';

// Runs the runtime half (inside the node namespace, through nsenter) and
// keeps it running: if it dies it is started again with a growing delay, and
// the containers it started keep running meanwhile under conmon. Lifecycle as
// every long-running piece: run(signal), ready, done.

export interface SupervisedCommand {
  file: string;
  args: readonly string[];
  env: NodeJS.ProcessEnv;
}

export interface RuntimeSupervisorOptions {
  command: SupervisedCommand;
  log: Logger;
  /** Written with the current child's pid, removed when it stops. */
  pidFile: string;
  /** Resolves true once the runtime answers (a CRI Version call). */
  probe: () => Promise<boolean>;
  /** Delay before restart number `n` (1-based). */
  backoffMs?: (n: number) => number;
  /** A child that lived this long resets the backoff. */
  healthyAfterMs?: number;
  stopTimeoutMs?: number;
  sleep?: (ms: number, signal: AbortSignal) => Promise<void>;
}

const defaultBackoff = (n: number): number => Math.min(30000, 500 * 2 ** (n - 1));

function abortableSleep(ms: number, signal: AbortSignal): Promise<void> {
  return new Promise((resolve) => {
    const t = setTimeout(done, ms);
    signal.addEventListener('abort', done, { once: true });
    function done(): void {
      clearTimeout(t);
      signal.removeEventListener('abort', done);
      resolve();
    }
  });
}

export class RuntimeSupervisor {
  readonly ready: Promise<void>;
  private markReady!: () => void;
  private child: ChildProcess | undefined;
  /** How many times the runtime half was started again after dying. */
  restarts = 0;

  constructor(private readonly opts: RuntimeSupervisorOptions) {
    this.ready = new Promise((r) => (this.markReady = r));
  }

  get pid(): number | undefined {
    return this.child?.pid;
  }

  /** Resolves once `signal` aborted and the runtime half has exited. */
  async run(signal: AbortSignal): Promise<void> {
    const o = this.opts;
    const sleep = o.sleep ?? abortableSleep;
    let failures = 0;
    // One listener for the whole run, however often the child restarts.
    const stopped = new Promise<'stop'>((r) => {
      if (signal.aborted) r('stop');
      else signal.addEventListener('abort', () => r('stop'), { once: true });
    });
    while (!signal.aborted) {
      const started = Date.now();
      const exit = this.start();
      void this.waitUntilAnswering(exit, signal);
      const result = await Promise.race([exit, stopped]);
      if (result === 'stop') {
        await this.stopChild(exit);
        break;
      }
      if (signal.aborted) break;
      failures = Date.now() - started > (o.healthyAfterMs ?? 30000) ? 1 : failures + 1;
      const delay = (o.backoffMs ?? defaultBackoff)(failures);
      o.log.warn('runtime half exited; restarting it', { exit: result, restartInMs: delay });
      this.restarts++;
      await sleep(delay, signal);
    }
    await rm(o.pidFile, { force: true });
  }

  private start(): Promise<string> {
    const o = this.opts;
    const child = spawn(o.command.file, o.command.args, { stdio: ['ignore', 'inherit', 'inherit'], env: o.command.env });
    this.child = child;
    if (child.pid !== undefined) void writeFile(o.pidFile, `${child.pid}\n`, { mode: 0o600 }).catch(() => {});
    o.log.info('runtime half started', { pid: child.pid });
    return new Promise((resolve) => {
      child.once('error', (e) => resolve(`spawn error: ${e.message}`));
      child.once('exit', (code, sig) => resolve(sig ? `signal ${sig}` : `exit code ${code}`));
    });
  }

  private async waitUntilAnswering(exit: Promise<string>, signal: AbortSignal): Promise<void> {
    let exited = false;
    void exit.then(() => (exited = true));
    while (!exited && !signal.aborted) {
      // A probe that throws counts as "not answering yet", never as a crash of the agent.
      if (await this.opts.probe().catch(() => false)) {
        this.markReady();
        return;
      }
      await abortableSleep(50, signal);
    }
  }

  private async stopChild(exit: Promise<string>): Promise<void> {
    const child = this.child;
    if (!child || child.exitCode !== null || child.signalCode !== null) return;
    child.kill('SIGTERM');
    const timeout = new Promise<'timeout'>((r) => setTimeout(() => r('timeout'), this.opts.stopTimeoutMs ?? 10000).unref());
    if ((await Promise.race([exit, timeout])) === 'timeout') {
      this.opts.log.warn('runtime half did not stop in time; killing it', { pid: child.pid });
      child.kill('SIGKILL');
      await exit;
    }
  }
}
