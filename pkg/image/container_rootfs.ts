import { mkdir, rm } from 'node:fs/promises';
import { join } from 'node:path';

import { internal } from '../errdefs/errors.js';
import { runTool } from '../netns/exec_tool.js';
import type { Snapshotter } from './layer_store.js';

// A container's root filesystem on its image's layers: with overlayfs the
// layers are the read-only lowers and the container gets an upper of its
// own; with the copy snapshotter it gets a copy of the merged tree. Mounted
// in the node's mount namespace, where runc and conmon run.

export interface ContainerRootfsOptions {
  root: string;
  snapshotter: Snapshotter;
  mount: string;
  umount: string;
  cp: string;
}

export class ContainerRootfs {
  constructor(private readonly o: ContainerRootfsOptions) {}

  dir(id: string): string {
    return join(this.o.root, 'containers', id);
  }

  /** What the container itself has written (ContainerStats.writable_layer): the overlay's upper, or the whole copy. */
  writableDir(id: string): string {
    return join(this.dir(id), this.o.snapshotter === 'overlayfs' ? 'upper' : 'rootfs');
  }

  /** `layerDirs` from the bottom layer up; resolves with the rootfs path. */
  async prepare(id: string, layerDirs: readonly string[]): Promise<string> {
    const d = this.dir(id);
    const rootfs = join(d, 'rootfs');
    await mkdir(rootfs, { recursive: true, mode: 0o755 });
    try {
      if (this.o.snapshotter === 'overlayfs') {
        await mkdir(join(d, 'upper'), { mode: 0o755 });
        await mkdir(join(d, 'work'), { mode: 0o700 });
        // overlayfs lists lowers top first.
        const lower = [...layerDirs].reverse().join(':');
        const r = await runTool(this.o.mount, ['-t', 'overlay', 'overlay', '-o', `userxattr,lowerdir=${lower},upperdir=${join(d, 'upper')},workdir=${join(d, 'work')}`, rootfs]);
        if (r.code !== 0) throw internal(`mounting the container's overlay failed: ${r.stderr.trim()}`, { field: 'rootfs' });
      } else {
        const top = layerDirs[layerDirs.length - 1];
        if (top) {
          await rm(rootfs, { recursive: true, force: true });
          const r = await runTool(this.o.cp, ['-a', '--', top, rootfs]);
          if (r.code !== 0) throw internal(`copying the image for the container failed: ${r.stderr.trim()}`, { field: 'rootfs' });
        }
      }
    } catch (e: unknown) {
      await this.remove(id);
      throw e;
    }
    return rootfs;
  }

  /** Unmounts and removes; idempotent. */
  async remove(id: string): Promise<void> {
    const d = this.dir(id);
    if (this.o.snapshotter === 'overlayfs') await runTool(this.o.umount, [join(d, 'rootfs')]).catch(() => undefined);
    await rm(d, { recursive: true, force: true });
  }
}
