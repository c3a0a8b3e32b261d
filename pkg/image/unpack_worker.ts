import { parentPort } from 'node:worker_threads';

import { DomainError } from '../errdefs/errors.js';
import { silentLogger } from '../log/logger.js';
import { unpackBlob, type UnpackJob } from './unpack_blob.js';

// The unpack worker thread: layers are CPU work (inflate, hash, tar) and
// many small file-system calls; in workers they use every core and keep the
// CRI server's thread free. Messages: {id, job} in; {id, result} or
// {id, error} out; {id, cancel} aborts a job.

export type WorkerRequest = { id: number; job: UnpackJob } | { id: number; cancel: true };
export type WorkerError = { code: string; message: string; field?: string; errno?: string };

const running = new Map<number, AbortController>();
const port = parentPort;
if (port) {
  port.on('message', (m: WorkerRequest) => {
    if ('cancel' in m) {
      running.get(m.id)?.abort(new Error('pull cancelled'));
      return;
    }
    const ctl = new AbortController();
    running.set(m.id, ctl);
    unpackBlob(m.job, silentLogger, ctl.signal).then(
      (result) => port.postMessage({ id: m.id, result }),
      (e: unknown) => {
        const error: WorkerError =
          e instanceof DomainError
            ? { code: e.code, message: e.message, ...(e.field !== undefined ? { field: e.field } : {}) }
            : { code: 'Internal', message: e instanceof Error ? e.message : String(e), ...errnoOf(e) };
        port.postMessage({ id: m.id, error });
      },
    ).finally(() => running.delete(m.id));
  });
}

function errnoOf(e: unknown): { errno?: string } {
  for (let cur: unknown = e, i = 0; cur instanceof Error && i < 5; cur = (cur as { cause?: unknown }).cause, i++) {
    const code = (cur as NodeJS.ErrnoException).code;
    if (typeof code === 'string' && /^E[A-Z]+$/.test(code)) return { errno: code };
  }
  return {};
}
