import { createHash, randomBytes } from 'node:crypto';
import { mkdir, readdir, readFile, rename, rm } from 'node:fs/promises';
import { join } from 'node:path';

import { invalidArgument } from '../errdefs/errors.js';
import { fsyncDir, fsyncTree, removeDurable, syncFileSystem, writeFileDurable } from '../store/durable_file.js';
import { diskFullError } from './disk_full.js';
import { SharedJobs } from './shared_jobs.js';
import type { Logger } from '../log/logger.js';
import type { ApplyOptions } from './unpack/apply.js';
import { unpackBlob, type UnpackJob, type UnpackJobResult } from './unpack_blob.js';

// Unpacked layers, one folder per chain id, shared by every image whose
// layer stack starts the same way. With the overlayfs snapshotter each
// folder holds just that layer's changes (a read-only lower); with the copy
// snapshotter (no overlayfs in the user namespace) each folder holds the
// whole merged filesystem up to that layer.
//
//   <root>/layers/<chain hex>/fs        the layer (or merged tree)
//   <root>/layers/<chain hex>/layer.json
//   <root>/layers/<chain hex>.unpack-*  being unpacked (removed on start)
//
// A layer counts as present when its layer.json is there, and that is
// written only after the tree is on disk (an fsync of each file and folder,
// or a syncfs of the file system: `durability`), then renamed into place and
// the folder fsynced: after a power cut a layer is whole or absent, never an
// empty tree that an image record points to. fsync is the default: it costs
// about what syncfs does for a pull's layers (BENCHMARKS.md), and it waits
// only on the layer's own data, where syncfs waits on every dirty page of
// the file system — a container writing hard would slow every pull.

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
  /** Runs one unpack (a worker pool in the agent); in-process when not given. */
  unpacker?: (job: UnpackJob, signal?: AbortSignal) => Promise<UnpackJobResult>;
  /** For the copy snapshotter: copies a tree (cp -a), to start a layer from its parent. */
  copyTree?: (from: string, to: string) => Promise<void>;
  /**
   * How an unpacked tree is made durable before it counts: 'fsync' (each
   * file and folder, the default), 'syncfs' (one `sync -f`), 'none' (benchmarks).
   */
  durability?: 'syncfs' | 'fsync' | 'none';
  /** The sync binary for 'syncfs'. */
  sync?: string;
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
  private readonly inflight = new SharedJobs();

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
   * for one chain id share the work, which goes on while any caller still
   * waits (`signal`: this caller's). On failure nothing of it stays.
   */
  async unpack(chainId: string, parentChainId: string | undefined, diffId: string, blobPath: string, signal?: AbortSignal): Promise<void> {
    if (await this.has(chainId)) return;
    await this.inflight.run(
      chainId,
      async (jobSignal) => {
        if (await this.has(chainId)) return;
        await this.doUnpack(chainId, parentChainId, diffId, blobPath, jobSignal);
      },
      signal,
    );
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
      const job: UnpackJob = {
        blobPath,
        target: fs,
        mode: this.o.snapshotter === 'overlayfs' ? 'layer' : 'merge',
        preserveOwnership: this.o.preserveOwnership,
        tools: this.o.tools,
      };
      const result = this.o.unpacker ? await this.o.unpacker(job, signal) : await unpackBlob(job, this.o.log, signal);
      const got = result.diffId;
      if (got !== diffId) throw invalidArgument(`layer ${chainId} unpacks to ${got}, not the diff id ${diffId} its image config states`, { field: 'diff_ids' });
      for (const s of result.skipped) this.o.log.warn('layer entry skipped', { layer: diffId, entry: s.entry, reason: s.reason });
      const info: LayerInfo = { chainId, diffId, snapshotter: this.o.snapshotter };
      await this.makeDurable(work);
      await writeFileDurable(join(work, 'layer.json'), JSON.stringify(info) + '\n');
      await rm(final, { recursive: true, force: true });
      await rename(work, final);
      await fsyncDir(join(this.o.root, 'layers'));
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
    // The marker first: a crash midway leaves a folder without layer.json, which counts as absent and gc removes.
    await removeDurable(join(this.dir(chainId), 'layer.json'));
    await rm(this.dir(chainId), { recursive: true, force: true });
  }

  private async makeDurable(work: string): Promise<void> {
    const how = this.o.durability ?? 'fsync';
    if (how === 'syncfs') await syncFileSystem(work, this.o.sync);
    else if (how === 'fsync') await fsyncTree(work);
  }
}
