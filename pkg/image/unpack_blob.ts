import { createHash } from 'node:crypto';
import { createReadStream } from 'node:fs';
import { open } from 'node:fs/promises';
import { PassThrough, Transform } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { createGunzip } from 'node:zlib';

import { Decompress } from 'fzstd';

import type { Logger } from '../log/logger.js';
import { applyLayer, detectCompression, type SkippedEntry, type UnpackTools } from './unpack/apply.js';

// One layer blob from the content store applied to a folder: decompress
// (by magic bytes), hash the uncompressed tar (the diff id), apply. Runs in a
// worker thread (unpack_pool.ts) or in-process.

export interface UnpackJob {
  blobPath: string;
  target: string;
  mode: 'layer' | 'merge';
  preserveOwnership: boolean;
  tools: UnpackTools;
}

export interface UnpackJobResult {
  /** sha256 of the uncompressed tar, to be checked against the image config. */
  diffId: string;
  entries: number;
  skipped: SkippedEntry[];
}

export async function unpackBlob(job: UnpackJob, log: Logger, signal?: AbortSignal): Promise<UnpackJobResult> {
  const uncompressed = new PassThrough();
  const hash = createHash('sha256');
  const hasher = new Transform({
    transform(chunk: Buffer, _enc, cb) {
      hash.update(chunk);
      cb(null, chunk);
    },
  });
  const decompress = await decompressorFor(job.blobPath);
  const feeding = pipeline(createReadStream(job.blobPath, { highWaterMark: 256 * 1024 }), decompress, hasher, uncompressed, signal ? { signal } : {});
  const applying = applyLayer(uncompressed, job.target, {
    mode: job.mode,
    preserveOwnership: job.preserveOwnership,
    log,
    tools: job.tools,
    ...(signal ? { signal } : {}),
  });
  // The applier's error (a hostile entry, say) explains more than the broken pipe it causes.
  const [fed, applied] = await Promise.allSettled([feeding, applying]);
  if (applied.status === 'rejected') throw applied.reason;
  if (fed.status === 'rejected') throw fed.reason;
  return { diffId: `sha256:${hash.digest('hex')}`, entries: applied.value.entries, skipped: applied.value.skipped };
}

/** The decompressor for a blob, chosen by its first bytes (media types lie more often than magic). */
async function decompressorFor(path: string): Promise<NodeJS.ReadWriteStream> {
  const f = await open(path, 'r');
  const head = Buffer.alloc(4);
  try {
    await f.read(head, 0, 4, 0);
  } finally {
    await f.close();
  }
  const kind = detectCompression(head);
  // 256 KiB output chunks: the default 16 KiB makes decompression and hashing pay per-chunk costs many times over.
  if (kind === 'gzip') return createGunzip({ chunkSize: 256 * 1024 });
  if (kind === 'zstd') return zstdStream();
  return new PassThrough();
}

/** fzstd is push-based: feed it each chunk, finish it at the end. */
function zstdStream(): Transform {
  const t: Transform = new Transform({
    transform(chunk: Buffer, _enc, cb) {
      try {
        z.push(chunk);
        cb();
      } catch (e: unknown) {
        cb(e instanceof Error ? e : new Error(String(e)));
      }
    },
    flush(cb) {
      try {
        z.push(new Uint8Array(0), true);
        cb();
      } catch (e: unknown) {
        cb(e instanceof Error ? e : new Error(String(e)));
      }
    },
  });
  const z = new Decompress((c: Uint8Array) => {
    t.push(Buffer.from(c));
  });
  return t;
}
