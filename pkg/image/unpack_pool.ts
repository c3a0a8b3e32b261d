import { availableParallelism } from 'node:os';
import { Worker } from 'node:worker_threads';

import { DomainError, type ErrorCode, errorCodes } from '../errdefs/errors.js';
import type { UnpackJob, UnpackJobResult } from './unpack_blob.js';
import type { WorkerError, WorkerRequest } from './unpack_worker.js';

// A fixed pool of unpack worker threads (one per core by default), started
// lazily and shared by every pull. Jobs queue when all workers are busy.

interface Pending {
  resolve: (r: UnpackJobResult) => void;
  reject: (e: Error) => void;
}

export class UnpackPool {
  private readonly workers: Worker[] = [];
  private readonly load = new Map<Worker, number>();
  private readonly pending = new Map<number, Pending & { worker: Worker }>();
  private readonly idleTimers = new Map<Worker, NodeJS.Timeout>();
  private nextId = 1;

  /**
   * `idleMs`: a worker with nothing to do for that long is ended. Pulls come
   * in bursts; between them an idle worker is a V8 isolate (tens of MiB) for
   * nothing, and a new one starts in tens of milliseconds.
   */
  constructor(
    private readonly size = Math.max(1, Math.min(4, availableParallelism())),
    private readonly idleMs = 5000,
  ) {}

  run(job: UnpackJob, signal?: AbortSignal): Promise<UnpackJobResult> {
    const worker = this.pick();
    const id = this.nextId++;
    return new Promise<UnpackJobResult>((resolve, reject) => {
      this.pending.set(id, { resolve, reject, worker });
      this.load.set(worker, (this.load.get(worker) ?? 0) + 1);
      const onAbort = (): void => worker.postMessage({ id, cancel: true } satisfies WorkerRequest);
      signal?.addEventListener('abort', onAbort, { once: true });
      const done = (): void => {
        signal?.removeEventListener('abort', onAbort);
        const left = (this.load.get(worker) ?? 1) - 1;
        this.load.set(worker, left);
        if (left === 0) this.retireLater(worker);
      };
      const p = this.pending.get(id)!;
      p.resolve = (r) => {
        done();
        resolve(r);
      };
      p.reject = (e) => {
        done();
        reject(e);
      };
      worker.postMessage({ id, job } satisfies WorkerRequest);
    });
  }

  /** Workers alive now. */
  get workerCount(): number {
    return this.workers.length;
  }

  /** Stops the workers; jobs still running fail. */
  async close(): Promise<void> {
    for (const t of this.idleTimers.values()) clearTimeout(t);
    this.idleTimers.clear();
    await Promise.all(this.workers.map((w) => w.terminate()));
    this.workers.length = 0;
  }

  private pick(): Worker {
    const w = this.choose();
    clearTimeout(this.idleTimers.get(w));
    this.idleTimers.delete(w);
    return w;
  }

  private choose(): Worker {
    if (this.workers.length < this.size) {
      const idle = this.workers.find((w) => (this.load.get(w) ?? 0) === 0);
      if (idle) return idle;
      return this.spawn();
    }
    return this.workers.reduce((a, b) => ((this.load.get(a) ?? 0) <= (this.load.get(b) ?? 0) ? a : b));
  }

  private retireLater(w: Worker): void {
    clearTimeout(this.idleTimers.get(w));
    const t = setTimeout(() => {
      this.idleTimers.delete(w);
      if ((this.load.get(w) ?? 0) !== 0) return;
      const i = this.workers.indexOf(w);
      if (i >= 0) this.workers.splice(i, 1);
      this.load.delete(w);
      w.removeAllListeners('exit');
      void w.terminate();
    }, this.idleMs);
    t.unref();
    this.idleTimers.set(w, t);
  }

  private spawn(): Worker {
    const w = new Worker(new URL('./unpack_worker.js', import.meta.url));
    // Idle workers must not keep the runtime half alive at shutdown.
    w.unref();
    w.on('message', (m: { id: number; result?: UnpackJobResult; error?: WorkerError }) => {
      const p = this.pending.get(m.id);
      if (!p) return;
      this.pending.delete(m.id);
      if (m.error) p.reject(toError(m.error));
      else p.resolve(m.result!);
    });
    w.on('error', (e) => this.failAll(w, e));
    w.on('exit', (code) => this.failAll(w, new Error(`unpack worker exited with code ${code}`)));
    this.workers.push(w);
    this.load.set(w, 0);
    return w;
  }

  private failAll(w: Worker, e: Error): void {
    const i = this.workers.indexOf(w);
    if (i >= 0) this.workers.splice(i, 1);
    this.load.delete(w);
    for (const [id, p] of this.pending) {
      if (p.worker !== w) continue;
      this.pending.delete(id);
      p.reject(e);
    }
  }
}

function toError(e: WorkerError): Error {
  const code: ErrorCode = (errorCodes as readonly string[]).includes(e.code) ? (e.code as ErrorCode) : 'Internal';
  const err = new DomainError(code, e.message, e.field !== undefined ? { field: e.field } : {});
  // Keep the errno so a full disk is still recognised (disk_full.ts).
  if (e.errno) Object.assign(err, { cause: Object.assign(new Error(e.errno), { code: e.errno }) });
  return err;
}
