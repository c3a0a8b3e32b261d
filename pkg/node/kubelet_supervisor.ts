import type { Logger } from '../log/logger.js';
import { ProcessSupervisor } from './runtime_supervisor.js';

// Kubelet mode: keeps the upstream kubelet running inside the node namespace
// (entered through nsenter, as `usernode enter` does), with the supervisor
// the runtime half has. Stopping sends SIGTERM (kubelet stops its servers;
// pods keep running under conmon, as they do when kubelet restarts on any
// node) and SIGKILL after a grace period. Its stdout and stderr go to one log
// file, appended across restarts.

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
}

const defaultBackoff = (n: number): number => Math.min(30000, 1000 * 2 ** (n - 1));

export class KubeletSupervisor extends ProcessSupervisor {
  constructor(o: KubeletSupervisorOptions) {
    const [file, ...args] = o.argv;
    super({
      name: 'kubelet',
      command: { file: file!, args, env: o.env },
      log: o.log,
      logFile: o.logFile,
      ...(o.pidFile !== undefined ? { pidFile: o.pidFile } : {}),
      backoffMs: o.backoffMs ?? defaultBackoff,
      healthyAfterMs: o.healthyAfterMs ?? 60000,
      ...(o.stopTimeoutMs !== undefined ? { stopTimeoutMs: o.stopTimeoutMs } : {}),
    });
  }
}
