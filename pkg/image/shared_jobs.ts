// One piece of work (a blob's fetch, a layer's unpack) shared by every caller
// that wants it at once, as containerd shares an ingest. The work runs with
// a signal of its own, not its first caller's: a caller that gives up (its
// PullImage cancelled) leaves, the others keep waiting and the work goes on;
// only when every caller has left is the work stopped.

interface Job {
  done: Promise<void>;
  waiters: number;
  stop: AbortController;
}

export class SharedJobs {
  private readonly jobs = new Map<string, Job>();

  /** Number of jobs running (tests). */
  get size(): number {
    return this.jobs.size;
  }

  /**
   * Joins the job `key`, starting it with `work` when none runs. Resolves when
   * the job does; rejects with `signal`'s reason as soon as this caller's
   * signal aborts, whatever the job does then.
   */
  run(key: string, work: (signal: AbortSignal) => Promise<void>, signal?: AbortSignal): Promise<void> {
    signal?.throwIfAborted();
    let job = this.jobs.get(key);
    if (!job) {
      const stop = new AbortController();
      const started: Job = { done: Promise.resolve().then(() => work(stop.signal)), waiters: 0, stop };
      this.jobs.set(key, started);
      const forget = (): void => {
        if (this.jobs.get(key) === started) this.jobs.delete(key);
      };
      started.done.then(forget, forget);
      job = started;
    }
    return this.wait(key, job, signal);
  }

  private wait(key: string, job: Job, signal: AbortSignal | undefined): Promise<void> {
    job.waiters++;
    return new Promise<void>((resolve, reject) => {
      let left = false;
      const leave = (): void => {
        if (left) return;
        left = true;
        signal?.removeEventListener('abort', onAbort);
        job.waiters--;
      };
      const onAbort = (): void => {
        leave();
        // The last caller gone: nobody wants the result any more. A caller
        // coming after this starts afresh rather than joining work being stopped.
        if (job.waiters === 0) {
          if (this.jobs.get(key) === job) this.jobs.delete(key);
          job.stop.abort(signal!.reason);
        }
        reject(signal!.reason);
      };
      signal?.addEventListener('abort', onAbort, { once: true });
      job.done.then(
        () => {
          leave();
          resolve();
        },
        (e: unknown) => {
          leave();
          reject(e);
        },
      );
    });
  }
}
