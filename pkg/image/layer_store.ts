import { createHash, randomBytes } from 'node:crypto';
import { createReadStream } from 'node:fs';
import { mkdir, open, readdir, readFile, rename, rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { PassThrough, Transform } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { createGunzip } from 'node:zlib';

import { Decompress } from 'fzstd';

import { invalidArgument } from '../errdefs/errors.js';
import { diskFullError } from './disk_full.js';
import type { Logger } from '../log/logger.js';
import { applyLayer, detectCompression, type ApplyOptions } from './unpack/apply.js';

// Unpacked layers, one folder per chain id, shared by every image whose
// layer stack starts the same way. With the overlayfs snapshotter each
// folder holds just that layer's changes (a read-only lower); with the copy
// snapshotter (no overlayfs in the user namespace) each folder holds the
// whole merged filesystem up to that layer.
//
//   <root>/layers/<chain hex>/fs        the layer (or merged tree)
//   <root>/layers/<chain hex>/layer.json
//   <root>/layers/<chain hex>.unpack-*  being unpacked (removed on start)

export type Snapshotter = 'overlayfs' | 'copy';

export interface LayerInfo {
  chainId: string;
  diffId: string;
  snapshotter: Snapshotter;
}

export interface LayerStoreOptions {
  root: string;
  snapshotter: Snapshotter;
  log: Logger;
  tools: ApplyOptions['tools'];
  /** Inside the node namespace ownership is kept; as a plain user (tests) it cannot be. */
  preserveOwnership: boolean;
  /** For the copy snapshotter: copies a tree (cp -a), to start a layer from its parent. */
  copyTree?: (from: string, to: string) => Promise<void>;
}

/** chainID(L0) = diffID(L0); chainID(Ln) = sha256(chainID(Ln-1) + " " + diffID(Ln)). */
export function chainIds(diffIds: readonly string[]): string[] {
  const out: string[] = [];
  for (const d of diffIds) {
    const prev = out[out.length - 1];
    out.push(prev === undefined ? d : `sha256:${createHash('sha256').update(`${prev} ${d}`).digest('hex')}`);
  }
  return out;
}

export class LayerStore {
  private readonly inflight = new Map<string, Promise<void>>();

  constructor(private readonly o: LayerStoreOptions) {}

  get snapshotter(): Snapshotter {
    return this.o.snapshotter;
  }

  async init(): Promise<void> {
    const dir = join(this.o.root, 'layers');
    await mkdir(dir, { recursive: true, mode: 0o700 });
    for (const n of await readdir(dir)) if (n.includes('.unpack-')) await rm(join(dir, n), { recursive: true, force: true });
  }

  dir(chainId: string): string {
    return join(this.o.root, 'layers', chainId.slice('sha256:'.length));
  }

  /** The folder holding the layer's files. */
  fsPath(chainId: string): string {
    return join(this.dir(chainId), 'fs');
  }

  async has(chainId: string): Promise<boolean> {
    try {
      const info = JSON.parse(await readFile(join(this.dir(chainId), 'layer.json'), 'utf8')) as LayerInfo;
      return info.snapshotter === this.o.snapshotter;
    } catch {
      return false;
    }
  }

  /**
   * Unpacks the blob at `blobPath` as the layer `chainId` (whose parent is `parentChainId`),
   * checking that its uncompressed bytes hash to `diffId`. Concurrent calls
   * for one chain id share the work. On failure nothing of it stays.
   */
  async unpack(chainId: string, parentChainId: string | undefined, diffId: string, blobPath: string, signal?: AbortSignal): Promise<void> {
    if (await this.has(chainId)) return;
    const running = this.inflight.get(chainId);
    if (running) return running;
    const job = this.doUnpack(chainId, parentChainId, diffId, blobPath, signal);
    this.inflight.set(chainId, job);
    try {
      await job;
    } finally {
      this.inflight.delete(chainId);
    }
  }

  private async doUnpack(chainId: string, parentChainId: string | undefined, diffId: string, blobPath: string, signal?: AbortSignal): Promise<void> {
    const final = this.dir(chainId);
    const work = `${final}.unpack-${randomBytes(4).toString('hex')}`;
    const fs = join(work, 'fs');
    try {
      await mkdir(work, { mode: 0o700 });
      if (this.o.snapshotter === 'copy' && parentChainId !== undefined) {
        if (!this.o.copyTree) throw new Error('copy snapshotter needs copyTree');
        await this.o.copyTree(this.fsPath(parentChainId), fs);
      } else {
        await mkdir(fs, { mode: 0o755 });
      }
      const uncompressed = new PassThrough();
      const hash = createHash('sha256');
      const hasher = new Transform({
        transform(chunk: Buffer, _enc, cb) {
          hash.update(chunk);
          cb(null, chunk);
        },
      });
      const decompress = await decompressorFor(blobPath);
      const feeding = pipeline(createReadStream(blobPath), decompress, hasher, uncompressed, signal ? { signal } : {});
      const applying = applyLayer(uncompressed, fs, {
        mode: this.o.snapshotter === 'overlayfs' ? 'layer' : 'merge',
        preserveOwnership: this.o.preserveOwnership,
        log: this.o.log,
        tools: this.o.tools,
        ...(signal ? { signal } : {}),
      });
      // The applier's error (a hostile entry, say) explains more than the broken pipe it causes.
      const [fed, applied] = await Promise.allSettled([feeding, applying]);
      if (applied.status === 'rejected') throw applied.reason;
      if (fed.status === 'rejected') throw fed.reason;
      const result = applied.value;
      const got = `sha256:${hash.digest('hex')}`;
      if (got !== diffId) throw invalidArgument(`layer ${chainId} unpacks to ${got}, not the diff id ${diffId} its image config states`, { field: 'diff_ids' });
      for (const s of result.skipped) this.o.log.warn('layer entry skipped', { layer: diffId, entry: s.entry, reason: s.reason });
      const info: LayerInfo = { chainId, diffId, snapshotter: this.o.snapshotter };
      await writeFile(join(work, 'layer.json'), JSON.stringify(info) + '\n');
      await rm(final, { recursive: true, force: true });
      await rename(work, final);
    } catch (e: unknown) {
      await rm(work, { recursive: true, force: true });
      throw diskFullError(e, this.o.root) ?? e;
    }
  }

  async list(): Promise<string[]> {
    const names = await readdir(join(this.o.root, 'layers'));
    return names.filter((n) => /^[a-f0-9]{64}$/.test(n)).map((n) => `sha256:${n}`);
  }

  async remove(chainId: string): Promise<void> {
    await rm(this.dir(chainId), { recursive: true, force: true });
  }
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
