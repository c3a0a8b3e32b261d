import { randomBytes } from 'node:crypto';
import { createReadStream } from 'node:fs';
import { mkdir, open, readdir, readFile, rename, rm, stat } from 'node:fs/promises';
import { join } from 'node:path';
import type { Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';

import { invalidArgument, notFound } from '../errdefs/errors.js';
import { fsyncDir, removeDurable } from '../store/durable_file.js';
import { diskFullError } from './disk_full.js';
import { DigestVerifier } from './registry_client.js';
import { SharedJobs } from './shared_jobs.js';

// Blobs by digest (content-addressed, shared by every image that names them).
// A blob is written to an ingest file and renamed into place only once its
// digest and size are verified, so a reader never sees a partial or wrong
// blob, and a crash leaves at most an ingest file, cleaned on start. The blob
// is fsynced before the rename and its folder after: a blob counts as present
// only once it would survive a power cut.
//
//   <root>/blobs/sha256/<hex>    verified content
//   <root>/ingest/<random>       being written

export class ContentStore {
  private readonly inflight = new SharedJobs();

  constructor(readonly root: string) {}

  async init(): Promise<void> {
    await mkdir(join(this.root, 'blobs', 'sha256'), { recursive: true, mode: 0o700 });
    // Ingests of a crashed agent are never resumed.
    await rm(join(this.root, 'ingest'), { recursive: true, force: true });
    await mkdir(join(this.root, 'ingest'), { recursive: true, mode: 0o700 });
  }

  path(digest: string): string {
    const [alg, hex] = digest.split(':');
    if (alg !== 'sha256' || !hex || !/^[a-f0-9]{64}$/.test(hex)) throw invalidArgument(`not a sha256 digest: ${digest}`, { field: 'digest' });
    return join(this.root, 'blobs', 'sha256', hex);
  }

  async has(digest: string): Promise<boolean> {
    try {
      await stat(this.path(digest));
      return true;
    } catch {
      return false;
    }
  }

  async size(digest: string): Promise<number> {
    try {
      return (await stat(this.path(digest))).size;
    } catch {
      throw notFound(`blob ${digest} is not in the content store`, { field: 'digest' });
    }
  }

  async read(digest: string): Promise<Buffer> {
    try {
      return await readFile(this.path(digest));
    } catch {
      throw notFound(`blob ${digest} is not in the content store`, { field: 'digest' });
    }
  }

  open(digest: string): Readable {
    return createReadStream(this.path(digest));
  }

  /**
   * Writes a blob from `source` (opened only if the blob is missing),
   * verifying digest and size. Concurrent writes of one digest share one
   * ingest, which goes on while any of its callers still waits (`signal`:
   * this caller's; the source gets the ingest's own).
   */
  async ingest(digest: string, size: number, source: (signal: AbortSignal) => Promise<Readable>, signal?: AbortSignal): Promise<void> {
    const final = this.path(digest);
    if (await this.has(digest)) return;
    await this.inflight.run(
      digest,
      async (jobSignal) => {
        if (await this.has(digest)) return;
        const tmp = join(this.root, 'ingest', randomBytes(8).toString('hex'));
        try {
          // Opened before the data flows: a stream that fails early must not
          // create the file after the cleanup below already ran.
          const fh = await open(tmp, 'w', 0o600);
          await pipeline(await source(jobSignal), new DigestVerifier(digest, size, `blob ${digest}`), fh.createWriteStream(), { signal: jobSignal });
          // The stream closed its descriptor; the data is fsynced through a new one (the page cache is per file, not per descriptor).
          const synced = await open(tmp, 'r');
          try {
            await synced.sync();
          } finally {
            await synced.close();
          }
          await rename(tmp, final);
          await fsyncDir(join(this.root, 'blobs', 'sha256'));
        } catch (e: unknown) {
          await rm(tmp, { force: true });
          throw diskFullError(e, this.root) ?? e;
        }
      },
      signal,
    );
  }

  async writeBuffer(digest: string, bytes: Buffer): Promise<void> {
    const { Readable: R } = await import('node:stream');
    await this.ingest(digest, bytes.length, async () => R.from([bytes]));
  }

  async list(): Promise<string[]> {
    return (await readdir(join(this.root, 'blobs', 'sha256'))).filter((n) => /^[a-f0-9]{64}$/.test(n)).map((n) => `sha256:${n}`);
  }

  async delete(digest: string): Promise<void> {
    await removeDurable(this.path(digest));
  }
}
