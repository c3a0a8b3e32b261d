import { spawn as nodeSpawn, type ChildProcess } from 'node:child_process';
import { open, rm, writeFile } from 'node:fs/promises';

import type { Logger } from '../log/logger.js';

// Kubelet mode: keeps the upstream kubelet running inside the node namespace
// (entered through nsenter, as `usernode enter` does). A kubelet that dies is
// started again after a growing delay; one that lived a while starts the
// count afresh. Stopping sends SIGTERM (kubelet stops its servers; pods keep
// running under conmon, as they do when kubelet restarts on any node) and
// SIGKILL after a grace period. Its stdout and stderr go to one log file,
// appended across restarts. Lifecycle as every long-running piece: run(signal), done.

export interface KubeletSupervisorOptions {
  /** nsenter … -- kubelet FLAGS */
  argv: readonly string[];
  env: NodeJS.ProcessEnv;
  logFile: string;
  /** Holds the running kubelet's pid, so a later agent finds one an agent killed outright left behind. */
  pidFile?: string;
  log: Logger;
  /** Delay before restart number `n` (1-based). */
  backoffMs?: (n: number) => number;
  /** A kubelet that lived this long resets the backoff. */
  healthyAfterMs?: number;
  stopTimeoutMs?: number;
  /** For tests: how the process is started. */
  spawn?: (file: string, args: readonly string[], o: { env: NodeJS.ProcessEnv; stdio: ['ignore', number, number] }) => ChildProcess;
}

const defaultBackoff = (n: number): number => Math.min(30000, 1000 * 2 ** (n - 1));

export class KubeletSupervisor {
  /** How many times kubelet was started again after it exited on its own. */
  restarts = 0;
  private child: ChildProcess | undefined;

  constructor(private readonly o: KubeletSupervisorOptions) {}

  get pid(): number | undefined {
    return this.child?.pid;
  }

  /** Resolves once `signal` aborted and kubelet has exited. */
  async run(signal: AbortSignal): Promise<void> {
    const o = this.o;
    let failures = 0;
    const stopped = new Promise<'stop'>((r) => {
      if (signal.aborted) r('stop');
      else signal.addEventListener('abort', () => r('stop'), { once: true });
    });
    while (!signal.aborted) {
      const started = Date.now();
      const { exit } = await this.start();
      const result = await Promise.race([exit, stopped]);
      if (result === 'stop') {
        await this.stopChild(exit);
        break;
      }
      failures = Date.now() - started > (o.healthyAfterMs ?? 60000) ? 1 : failures + 1;
      const delay = (o.backoffMs ?? defaultBackoff)(failures);
      o.log.warn('kubelet exited; starting it again', { exit: result, restartInMs: delay, log: o.logFile });
      this.restarts++;
      await Promise.race([new Promise((r) => setTimeout(r, delay).unref()), stopped]);
    }
    if (o.pidFile !== undefined) await rm(o.pidFile, { force: true });
  }

  private async start(): Promise<{ exit: Promise<string> }> {
    const o = this.o;
    const file = await open(o.logFile, 'a', 0o600);
    const [cmd, ...args] = o.argv;
    let child: ChildProcess;
    try {
      child = (o.spawn ?? ((f, a, so) => nodeSpawn(f, a, so)))(cmd!, args, { env: o.env, stdio: ['ignore', file.fd, file.fd] });
    } finally {
      // The child holds its own copy of the descriptor.
      await file.close();
    }
    this.child = child;
    if (o.pidFile !== undefined && child.pid !== undefined) await writeFile(o.pidFile, `${child.pid}\n`, { mode: 0o600 }).catch(() => {});
    o.log.info('kubelet started', { pid: child.pid, log: o.logFile });
    const exit = new Promise<string>((resolve) => {
      child.once('error', (e) => resolve(`spawn error: ${e.message}`));
      child.once('exit', (code, sig) => resolve(sig ? `signal ${sig}` : `exit code ${code}`));
    });
    return { exit };
  }

  private async stopChild(exit: Promise<string>): Promise<void> {
    const child = this.child;
    if (!child || child.exitCode !== null || child.signalCode !== null) return;
    child.kill('SIGTERM');
    const timeout = new Promise<'timeout'>((r) => setTimeout(() => r('timeout'), this.o.stopTimeoutMs ?? 10000).unref());
    if ((await Promise.race([exit, timeout])) === 'timeout') {
      this.o.log.warn('kubelet did not stop in time; killing it', { pid: child.pid });
      child.kill('SIGKILL');
      await exit;
    }
    this.o.log.info('kubelet stopped', { exit: await exit });
  }
}
