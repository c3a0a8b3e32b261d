import { mkdir, readdir, rm, stat, writeFile } from 'node:fs/promises';
import { join } from 'node:path';

import { internal } from '../errdefs/errors.js';
import { runTool } from '../netns/exec_tool.js';
import { shiftTree, type IdShift } from './id_shift.js';
import type { Snapshotter } from './layer_store.js';

// A container's root filesystem on its image's layers: with overlayfs the
// layers are the read-only lowers and the container gets an upper of its
// own; with the copy snapshotter it gets a copy of the merged tree. Mounted
// in the node's mount namespace, where runc and conmon run. A container of a
// pod with its own user namespace gets a private copy, re-owned to the pod's
// ids (id_shift.ts), whatever the snapshotter.

export interface ContainerRootfsOptions {
  root: string;
  /**
   * A folder of the node's own /run (a tmpfs every id may traverse) where a
   * container of a nested user namespace finds its rootfs and pod files: its
   * root is not the node's, and the agent's folders are closed to it.
   */
  viewRoot: string;
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

  /**
   * What the container itself has written (ContainerStats.writable_layer):
   * the overlay's upper, or the whole copy (the copy snapshotter's, or a
   * user-namespaced pod's private copy, which has no upper).
   */
  async writableDir(id: string): Promise<string> {
    const upper = join(this.dir(id), 'upper');
    if (this.o.snapshotter === 'overlayfs' && (await stat(upper).then(() => true, () => false))) return upper;
    return join(this.dir(id), 'rootfs');
  }

  /** `layerDirs` from the bottom layer up; resolves with the rootfs path. */
  async prepare(id: string, layerDirs: readonly string[], shift?: IdShift): Promise<string> {
    const d = this.dir(id);
    const rootfs = join(d, 'rootfs');
    await mkdir(rootfs, { recursive: true, mode: 0o755 });
    try {
      if (shift) {
        await this.copyMerged(d, layerDirs, rootfs);
        await shiftTree(rootfs, shift);
      } else if (this.o.snapshotter === 'overlayfs') {
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

  /**
   * An image volume (a CRI mount of an image): the image's merged tree,
   * read-only — an overlay of its layers without an upper, or the layer itself
   * when there is one (or the copy snapshotter's merged tree). Removed with the
   * container.
   */
  async prepareImageVolume(id: string, index: number, layerDirs: readonly string[]): Promise<string> {
    const top = layerDirs[layerDirs.length - 1];
    if (!top) throw internal('the image has no layers', { field: `config.mounts[${index}].image` });
    if (this.o.snapshotter !== 'overlayfs' || layerDirs.length === 1) return top;
    const dir = join(this.dir(id), 'volumes', String(index));
    await mkdir(dir, { recursive: true, mode: 0o755 });
    const r = await runTool(this.o.mount, ['-t', 'overlay', 'overlay', '-o', `ro,userxattr,lowerdir=${[...layerDirs].reverse().join(':')}`, dir]);
    if (r.code !== 0) throw internal(`mounting the image volume failed: ${r.stderr.trim()}`, { field: `config.mounts[${index}].image` });
    return dir;
  }

  /** A plain copy of the image's merged tree at `rootfs`: overlay layers merged through a read-only overlay of them. */
  private async copyMerged(d: string, layerDirs: readonly string[], rootfs: string): Promise<void> {
    let source = layerDirs[layerDirs.length - 1];
    if (!source) return;
    const view = join(d, 'image-view');
    // A single layer (or the copy snapshotter's merged tree) is already the whole image;
    // overlayfs needs two lowers to mount without an upper.
    const merge = this.o.snapshotter === 'overlayfs' && layerDirs.length > 1;
    if (merge) {
      await mkdir(view, { mode: 0o700 });
      const r = await runTool(this.o.mount, ['-t', 'overlay', 'overlay', '-o', `ro,userxattr,lowerdir=${[...layerDirs].reverse().join(':')}`, view]);
      if (r.code !== 0) throw internal(`mounting the image's layers to copy them failed: ${r.stderr.trim()}`, { field: 'rootfs' });
      source = view;
    }
    try {
      await rm(rootfs, { recursive: true, force: true });
      const r = await runTool(this.o.cp, ['-a', '--', source, rootfs]);
      if (r.code !== 0) throw internal(`copying the image for the container failed: ${r.stderr.trim()}`, { field: 'rootfs' });
    } finally {
      if (merge) {
        await runTool(this.o.umount, [view]).catch(() => undefined);
        await rm(view, { recursive: true, force: true });
      }
    }
  }

  /**
   * Binds the rootfs and `files` (name → path) into the container's view
   * folder, where runc, running as the pod's root in the pod's user namespace,
   * can reach them; the bound paths come back.
   */
  async userNamespaceView(id: string, rootfs: string, files: Record<string, string>): Promise<{ rootfs: string; files: Record<string, string> }> {
    const view = join(this.o.viewRoot, id);
    await mkdir(view, { recursive: true, mode: 0o755 });
    const bind = async (source: string, target: string): Promise<void> => {
      const r = await runTool(this.o.mount, ['--bind', source, target]);
      if (r.code !== 0) throw internal(`binding ${source} for the container's user namespace failed: ${r.stderr.trim()}`, { field: 'rootfs' });
    };
    await mkdir(join(view, 'rootfs'), { mode: 0o755 });
    await bind(rootfs, join(view, 'rootfs'));
    const out: Record<string, string> = {};
    for (const [name, source] of Object.entries(files)) {
      const target = join(view, name);
      await writeFile(target, '', { mode: 0o644 });
      await bind(source, target);
      out[name] = target;
    }
    return { rootfs: join(view, 'rootfs'), files: out };
  }

  /** Unmounts and removes; idempotent. */
  async remove(id: string): Promise<void> {
    const view = join(this.o.viewRoot, id);
    for (const name of await readdir(view).catch(() => [])) await runTool(this.o.umount, [join(view, name)]).catch(() => undefined);
    await rm(view, { recursive: true, force: true });
    const d = this.dir(id);
    for (const v of await readdir(join(d, 'volumes')).catch(() => [])) await runTool(this.o.umount, [join(d, 'volumes', v)]).catch(() => undefined);
    // Not mounted (a copy) is fine: umount fails and the folder goes.
    if (this.o.snapshotter === 'overlayfs') await runTool(this.o.umount, [join(d, 'rootfs')]).catch(() => undefined);
    await rm(d, { recursive: true, force: true });
  }
}
