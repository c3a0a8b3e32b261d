import { type FSWatcher, watch } from 'node:fs';
import { setTimeout as sleep } from 'node:timers/promises';

import type { Logger } from '../log/logger.js';
import { type ContainerRuntime, refresh } from './containers.js';
import { reconcileContainer } from './recover.js';

// Notices a container that exits by itself while nobody asks about it, so its
// record says EXITED (and a CONTAINER_STOPPED event goes out) within moments,
// not at the next status call. conmon writes the exit file into the exit
// folder (atomically: a temp file renamed into place); an inotify watch on
// the folder sees it. inotify can overflow or miss a folder that is made
// anew, so a periodic rescan of the live containers is the safety net. The
// rescan also notices a container whose conmon died without an exit file
// (killed, or its runtime folder wiped): runc is asked then (recover.ts).
// Lifecycle as every long-running piece: run(signal), ready, done.

export interface ExitWatcherOptions {
  containers: ContainerRuntime;
  log: Logger;
  /** Between two rescans of every live container; default 5 s. */
  rescanMs?: number;
}

const containerId = /^[0-9a-f]{64}$/;

export class ExitWatcher {
  readonly ready: Promise<void>;
  readonly done: Promise<void>;
  private markReady!: () => void;
  private markDone!: () => void;

  constructor(private readonly opts: ExitWatcherOptions) {
    this.ready = new Promise((r) => (this.markReady = r));
    this.done = new Promise((r) => (this.markDone = r));
  }

  /** Watches until `signal` aborts; a first scan finds the exits of the time the agent was down. */
  async run(signal: AbortSignal): Promise<void> {
    const { containers: c, log } = this.opts;
    let watcher: FSWatcher | undefined;
    try {
      watcher = watch(c.exitDir, { persistent: false }, (_event, name) => {
        if (typeof name === 'string' && containerId.test(name)) void this.check(name);
      });
      watcher.on('error', (e) => log.warn('exit folder watch failed; exits are found by the rescan', { dir: c.exitDir, error: e.message }));
    } catch (e: unknown) {
      log.warn('cannot watch the exit folder; exits are found by the rescan', { dir: c.exitDir, error: (e as Error).message });
    }
    // A process that exits at once may leave its exit file before StartContainer records RUNNING,
    // while refresh() still passes over it as never started: look again once it is RUNNING.
    const off = c.store.onChange((prev, next) => {
      if (next?.state === 'CONTAINER_RUNNING' && prev?.state !== 'CONTAINER_RUNNING') void this.check(next.id);
    });
    await this.rescan();
    this.markReady();
    const rescanMs = this.opts.rescanMs ?? 5000;
    while (!signal.aborted) {
      await sleep(rescanMs, undefined, { signal, ref: false }).catch(() => {});
      if (!signal.aborted) await this.rescan();
    }
    off();
    watcher?.close();
    this.markDone();
  }

  private async rescan(): Promise<void> {
    const live = this.opts.containers.store.list().filter((r) => r.state === 'CONTAINER_RUNNING');
    await Promise.all(live.map((r) => this.check(r.id, true)));
  }

  private async check(id: string, monitorToo = false): Promise<void> {
    const c = this.opts.containers;
    const r = c.store.find(id);
    if (!r) return;
    try {
      if (monitorToo) await reconcileContainer(r, c, this.opts.log);
      else await refresh(r, c);
    } catch (e: unknown) {
      this.opts.log.warn('recording a container exit failed', { id: id.slice(0, 12), error: (e as Error).message });
    }
  }
}
