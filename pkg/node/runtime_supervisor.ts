import { spawn, type ChildProcess } from 'node:child_process';
import { open, rm, writeFile } from 'node:fs/promises';

import type { Logger } from '../log/logger.js';

// Keeps one process of the node running — the runtime half, or in kubelet
// mode the upstream kubelet (kubelet_supervisor.ts), both inside the node
// namespace through nsenter: if it dies it is started again with a growing
// delay (a child that lived a while starts the count afresh), and the
// containers keep running meanwhile under conmon. Stopping sends SIGTERM and
// SIGKILL after a grace period. Lifecycle as every long-running piece:
// run(signal), ready, done.

export interface SupervisedCommand {
  file: string;
  args: readonly string[];
  env: NodeJS.ProcessEnv;
}

export interface ProcessSupervisorOptions {
  /** For the log lines: "runtime half", "kubelet". */
  name: string;
  command: SupervisedCommand;
  log: Logger;
  /** Written with the current child's pid, removed when it stops. */
  pidFile?: string;
  /** The child's stdout and stderr, appended across restarts; without it they are the agent's own. */
  logFile?: string;
  /** Resolves true once the child answers; without it, the child is ready once started. */
  probe?: () => Promise<boolean>;
  /** Delay before restart number `n` (1-based). */
  backoffMs?: (n: number) => number;
  /** A child that lived this long resets the backoff. */
  healthyAfterMs?: number;
  stopTimeoutMs?: number;
  sleep?: (ms: number, signal: AbortSignal) => Promise<void>;
}

export interface RuntimeSupervisorOptions extends Omit<ProcessSupervisorOptions, 'name' | 'pidFile' | 'probe'> {
  pidFile: string;
  /** Resolves true once the runtime answers (a CRI Version call). */
  probe: () => Promise<boolean>;
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

export class ProcessSupervisor {
  readonly ready: Promise<void>;
  private markReady!: () => void;
  private child: ChildProcess | undefined;
  /** How many times the child was started again after it exited on its own. */
  restarts = 0;

  constructor(private readonly opts: ProcessSupervisorOptions) {
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
      // An object, not a promise: awaiting the start must not wait for the exit.
      const { exit } = await this.start();
      void this.waitUntilAnswering(exit, signal);
      const result = await Promise.race([exit, stopped]);
      if (result === 'stop') {
        await this.stopChild(exit);
        break;
      }
      if (signal.aborted) break;
      failures = Date.now() - started > (o.healthyAfterMs ?? 30000) ? 1 : failures + 1;
      const delay = (o.backoffMs ?? defaultBackoff)(failures);
      o.log.warn(`${o.name} exited; restarting it`, { exit: result, restartInMs: delay, ...(o.logFile ? { log: o.logFile } : {}) });
      this.restarts++;
      await sleep(delay, signal);
    }
    if (o.pidFile !== undefined) await rm(o.pidFile, { force: true });
  }

  private async start(): Promise<{ exit: Promise<string> }> {
    const o = this.opts;
    let child: ChildProcess;
    if (o.logFile === undefined) child = spawn(o.command.file, o.command.args, { stdio: ['ignore', 'inherit', 'inherit'], env: o.command.env });
    else {
      const file = await open(o.logFile, 'a', 0o600);
      try {
        child = spawn(o.command.file, o.command.args, { stdio: ['ignore', file.fd, file.fd], env: o.command.env });
      } finally {
        // The child holds its own copy of the descriptor.
        await file.close();
      }
    }
    this.child = child;
    if (o.pidFile !== undefined && child.pid !== undefined) await writeFile(o.pidFile, `${child.pid}\n`, { mode: 0o600 }).catch(() => {});
    o.log.info(`${o.name} started`, { pid: child.pid, ...(o.logFile ? { log: o.logFile } : {}) });
    const exit = new Promise<string>((resolve) => {
      child.once('error', (e) => resolve(`spawn error: ${e.message}`));
      child.once('exit', (code, sig) => resolve(sig ? `signal ${sig}` : `exit code ${code}`));
    });
    return { exit };
  }

  private async waitUntilAnswering(exit: Promise<string>, signal: AbortSignal): Promise<void> {
    const probe = this.opts.probe;
    if (!probe) {
      this.markReady();
      return;
    }
    let exited = false;
    void exit.then(() => (exited = true));
    while (!exited && !signal.aborted) {
      // A probe that throws counts as "not answering yet", never as a crash of the agent.
      if (await probe().catch(() => false)) {
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
      this.opts.log.warn(`${this.opts.name} did not stop in time; killing it`, { pid: child.pid });
      child.kill('SIGKILL');
      await exit;
    }
    this.opts.log.info(`${this.opts.name} stopped`, { exit: await exit });
  }
}

/** The runtime half: ready once it answers its CRI socket. */
export class RuntimeSupervisor extends ProcessSupervisor {
  constructor(opts: RuntimeSupervisorOptions) {
    super({ name: 'runtime half', ...opts });
  }
}
