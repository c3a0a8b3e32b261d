import { constants } from 'node:fs';
import { chmod, lchown, link, lstat, lutimes, mkdir, open, rm, symlink, unlink } from 'node:fs/promises';
import { dirname, join, sep } from 'node:path';

import { type DomainError, internal, invalidArgument, isDomainError, messageOf, permissionDenied } from '../../errdefs/errors.js';
import { type ApplyOptions, MAX_MAPPED_ID, type SkippedEntry } from './apply_options.js';
import { entryComponents } from './entry_name.js';
import { makeFifo, makeWhiteoutDevice, runTool, setXattr, ToolError } from './host_tools.js';
import type { LayerEntry } from './layer_entry.js';
import { isRealDirectoryChain, lstatOrUndefined, resolveDirectory } from './resolve.js';
import { parseWhiteout, removeLowerContent } from './whiteout.js';

// Writes one layer's members below root, in tar order. Every path it touches
// comes from resolveDirectory (real directories below root) plus one final
// component that it never follows: files are created O_EXCL|O_NOFOLLOW after
// whatever was there is unlinked, links and directories are made by name, and
// metadata goes through the open file or the l* calls.

/** Directory metadata applied after the last member, since later members change a directory's mtime (and a read-only mode would stop them). */
interface PendingDirectory {
  entry: string;
  mode: number;
  mtime: number;
  atime: number;
  dev: number;
  ino: number;
}

/** Overlayfs's own xattrs: from a layer they could redirect or hide lower content, so only the applier sets them. */
const OVERLAY_XATTR = /^(trusted|user)\.overlay\./;

export class LayerWriter {
  readonly skipped: SkippedEntry[] = [];
  bytesWritten = 0;
  /** Physical paths of the members this layer wrote (hard links may point only at these; opaque dirs keep them). */
  private readonly written = new Set<string>();
  /** Physical directories that hold something in `written`. */
  private readonly holdsWritten = new Set<string>();
  private readonly pendingDirectories = new Map<string, PendingDirectory>();

  constructor(
    private readonly root: string,
    private readonly opts: ApplyOptions,
  ) {}

  /** Applies one member; `data` is its content (read to the end for regular files). */
  async apply(entry: LayerEntry, data: AsyncIterable<Buffer>): Promise<void> {
    try {
      await this.applyEntry(entry, data);
    } catch (e: unknown) {
      throw asEntryError(entry.name, e);
    }
  }

  /** Directory modes and times, deepest first. Call once, after the last member. */
  async finish(): Promise<void> {
    const dirs = [...this.pendingDirectories].sort(([a], [b]) => b.split(sep).length - a.split(sep).length);
    for (const [path, d] of dirs) {
      this.opts.signal?.throwIfAborted();
      try {
        // A later member may have replaced the directory, or a directory above
        // it with a link: then this metadata belongs to nothing that exists.
        if (!(await isRealDirectoryChain(this.root, path))) continue;
        const fh = await open(path, constants.O_RDONLY | constants.O_DIRECTORY | constants.O_NOFOLLOW).catch(() => undefined);
        if (fh === undefined) continue;
        try {
          const st = await fh.stat();
          if (st.dev !== d.dev || st.ino !== d.ino) continue;
          await fh.chmod(d.mode);
          await fh.utimes(d.atime, d.mtime);
        } finally {
          await fh.close();
        }
      } catch (e: unknown) {
        throw asEntryError(d.entry, e);
      }
    }
  }

  private async applyEntry(entry: LayerEntry, data: AsyncIterable<Buffer>): Promise<void> {
    const components = entryComponents(entry.name, entry.name);
    const base = components.at(-1);
    if (base === undefined) {
      if (entry.kind !== 'directory') throw invalidArgument(`layer entry "${entry.name}" names the layer root but is a ${entry.kind}, not a directory`, { field: entry.name });
      return this.directory(entry, this.root);
    }
    const parentComponents = components.slice(0, -1);
    const whiteout = parseWhiteout(base, entry.name);
    if (whiteout !== undefined) {
      if (whiteout.kind === 'aufs-meta') return this.skip(entry.name, 'aufs metadata whiteout, meaningless in an OCI layer');
      if (whiteout.kind === 'opaque') return this.opaque(entry, parentComponents);
      return this.whiteout(entry, parentComponents, whiteout.name);
    }

    const parent = await resolveDirectory(this.root, parentComponents, entry.name, true);
    const path = join(this.root, ...parent, base);
    switch (entry.kind) {
      case 'directory':
        return this.directory(entry, path);
      case 'file':
        return this.file(entry, path, data);
      case 'symlink':
        return this.symlink(entry, path);
      case 'hardlink':
        return this.hardlink(entry, path);
      case 'fifo':
        return this.fifo(entry, path);
      case 'char-device':
        if (this.opts.mode === 'layer' && entry.devmajor === 0 && entry.devminor === 0) return this.whiteoutDevice(entry, path);
        return this.skip(entry.name, `character device ${entry.devmajor}:${entry.devminor} cannot be created without privilege`);
      case 'block-device':
        return this.skip(entry.name, `block device ${entry.devmajor}:${entry.devminor} cannot be created without privilege`);
    }
  }

  private async directory(entry: LayerEntry, path: string): Promise<void> {
    let st = await lstatOrUndefined(path);
    if (st !== undefined && !st.isDirectory()) {
      await unlink(path);
      st = undefined;
    }
    if (st === undefined) {
      await mkdir(path, { mode: 0o700 });
      st = await lstat(path);
    }
    // Owner-writable until finish(), so the members below can be written by an ordinary user too.
    if ((st.mode & 0o700) !== 0o700) await chmod(path, (st.mode & 0o7777) | 0o700);
    if (this.opts.preserveOwnership) await this.chown(entry, () => lchown(path, entry.uid, entry.gid));
    await this.xattrs(entry, path);
    this.pendingDirectories.set(path, { entry: entry.name, mode: entry.mode, mtime: entry.mtime, atime: entry.atime, dev: st.dev, ino: st.ino });
    if (path !== this.root) this.markWritten(path);
  }

  private async file(entry: LayerEntry, path: string, data: AsyncIterable<Buffer>): Promise<void> {
    await this.clear(path);
    const fh = await open(path, constants.O_WRONLY | constants.O_CREAT | constants.O_EXCL | constants.O_NOFOLLOW, 0o600);
    try {
      for await (const chunk of data) {
        this.opts.signal?.throwIfAborted();
        let offset = 0;
        while (offset < chunk.length) offset += (await fh.write(chunk, offset)).bytesWritten;
        this.bytesWritten += chunk.length;
      }
      // chown clears setuid/setgid and file capabilities: owner, then xattrs, then mode.
      if (this.opts.preserveOwnership) await this.chown(entry, () => fh.chown(entry.uid, entry.gid));
      await this.xattrs(entry, path);
      await fh.chmod(entry.mode);
      await fh.utimes(entry.atime, entry.mtime);
    } finally {
      await fh.close();
    }
    this.markWritten(path);
  }

  private async symlink(entry: LayerEntry, path: string): Promise<void> {
    if (entry.linkname === '') throw invalidArgument(`layer entry "${entry.name}" is a symbolic link with an empty target`, { field: entry.name });
    if (entry.linkname.includes('\0')) throw invalidArgument(`layer entry "${entry.name}" has a NUL byte in its link target`, { field: entry.name });
    await this.clear(path);
    // The target is stored, not followed: it is only ever read by resolveDirectory.
    await symlink(entry.linkname, path);
    if (this.opts.preserveOwnership) await this.chown(entry, () => lchown(path, entry.uid, entry.gid));
    await this.xattrs(entry, path);
    await lutimes(path, entry.atime, entry.mtime);
    this.markWritten(path);
  }

  private async hardlink(entry: LayerEntry, path: string): Promise<void> {
    const components = entryComponents(entry.linkname, entry.name, 'link target');
    const base = components.at(-1);
    const parent = base === undefined ? undefined : await resolveDirectory(this.root, components.slice(0, -1), entry.name, false);
    const source = parent === undefined || base === undefined ? undefined : join(this.root, ...parent, base);
    const st = source === undefined ? undefined : await lstatOrUndefined(source);
    if (source === undefined || st === undefined || !this.written.has(source)) {
      throw invalidArgument(`layer entry "${entry.name}" is a hard link to "${entry.linkname}", which is not a file this layer has written`, { field: entry.name });
    }
    if (st.isDirectory()) throw invalidArgument(`layer entry "${entry.name}" is a hard link to the directory "${entry.linkname}"`, { field: entry.name });
    if (source === path) return;
    await this.clear(path);
    // link(2) does not follow a link at the source: a hard link to a symlink links the symlink.
    await link(source, path);
    this.markWritten(path);
  }

  private async fifo(entry: LayerEntry, path: string): Promise<void> {
    const mkfifo = this.opts.tools.mkfifo;
    if (mkfifo === undefined) return this.skip(entry.name, 'fifo: no mkfifo tool configured');
    await this.clear(path);
    await makeFifo(mkfifo, path, entry.mode, this.opts.signal);
    if (this.opts.preserveOwnership) await this.chown(entry, () => lchown(path, entry.uid, entry.gid));
    await this.xattrs(entry, path);
    // The final component is the fifo just made, so chmod's following of links does not apply; it does not open the fifo.
    await chmod(path, entry.mode);
    await lutimes(path, entry.atime, entry.mtime);
    this.markWritten(path);
  }

  /** `.wh.NAME`: in 'layer' mode an overlay whiteout at NAME, in 'merge' mode NAME removed. */
  private async whiteout(entry: LayerEntry, parentComponents: string[], name: string): Promise<void> {
    const parent = await resolveDirectory(this.root, parentComponents, entry.name, this.opts.mode === 'layer');
    if (parent === undefined) return; // Nothing below to delete.
    const path = join(this.root, ...parent, name);
    if (this.written.has(path) || this.holdsWritten.has(path)) {
      // A whiteout deletes from the layers below, never this layer's own NAME:
      // if that is a directory, only what the lower layers put in it goes.
      if ((await lstatOrUndefined(path))?.isDirectory()) await this.hideLowerContent(entry, path);
      return;
    }
    if (this.opts.mode === 'layer') return this.whiteoutDevice(entry, path);
    await rm(path, { recursive: true, force: true });
  }

  private async whiteoutDevice(entry: LayerEntry, path: string): Promise<void> {
    const mknod = this.opts.tools.mknod;
    if (mknod === undefined) return this.skip(entry.name, 'whiteout: no mknod tool configured, the lower file will show through');
    await this.clear(path);
    await makeWhiteoutDevice(mknod, path, this.opts.signal);
  }

  /** `.wh..wh..opq` in a directory. */
  private async opaque(entry: LayerEntry, dirComponents: string[]): Promise<void> {
    const dir = await resolveDirectory(this.root, dirComponents, entry.name, this.opts.mode === 'layer');
    if (dir !== undefined) await this.hideLowerContent(entry, join(this.root, ...dir));
  }

  /** 'layer' mode marks dir opaque for overlayfs; 'merge' mode removes from it what the layers below put there. */
  private async hideLowerContent(entry: LayerEntry, dir: string): Promise<void> {
    if (this.opts.mode === 'merge') return removeLowerContent(dir, this.written, this.holdsWritten);
    const setfattr = this.opts.tools.setfattr;
    if (setfattr === undefined) return this.skip(entry.name, 'opaque directory: no setfattr tool configured, lower content will show through');
    await runTool(setfattr, ['-h', '-n', 'user.overlay.opaque', '-v', 'y', '--', dir], this.opts.signal);
  }

  /** The layer's own extended attributes: best effort, recorded when skipped, never fatal. */
  private async xattrs(entry: LayerEntry, path: string): Promise<void> {
    for (const x of entry.xattrs) {
      const what = `xattr ${x.name}`;
      if (x.problem !== undefined) {
        this.skip(entry.name, `${what}: ${x.problem}`);
      } else if (OVERLAY_XATTR.test(x.name)) {
        this.skip(entry.name, `${what}: reserved for overlayfs, not taken from a layer`);
      } else if (this.opts.tools.setfattr === undefined) {
        this.skip(entry.name, `${what}: no setfattr tool configured`);
      } else {
        try {
          await setXattr(this.opts.tools.setfattr, path, x.name, x.value, this.opts.signal);
        } catch (e: unknown) {
          if (!(e instanceof ToolError)) throw e;
          this.skip(entry.name, `${what}: ${e.stderr.trim() || e.message}`);
        }
      }
    }
  }

  private async chown(entry: LayerEntry, change: () => Promise<void>): Promise<void> {
    checkMappedIds(entry);
    try {
      await change();
    } catch (e: unknown) {
      throw permissionDenied(`layer entry "${entry.name}": cannot change owner to uid ${entry.uid} gid ${entry.gid}: ${messageOf(e)}`, { field: entry.name, cause: e });
    }
  }

  /** Makes way for a non-directory at path: a directory there goes with its contents (never following a link). */
  private async clear(path: string): Promise<void> {
    const st = await lstatOrUndefined(path);
    if (st === undefined) return;
    if (st.isDirectory()) await rm(path, { recursive: true, force: true });
    else await unlink(path);
  }

  private markWritten(path: string): void {
    this.written.add(path);
    for (let d = dirname(path); d.length > this.root.length && !this.holdsWritten.has(d); d = dirname(d)) this.holdsWritten.add(d);
  }

  private skip(entry: string, reason: string): void {
    this.opts.log.warn('layer entry skipped', { entry, reason });
    this.skipped.push({ entry, reason });
  }
}

function checkMappedIds(entry: LayerEntry): void {
  for (const [kind, id] of [['uid', entry.uid], ['gid', entry.gid]] as const) {
    if (id > MAX_MAPPED_ID) {
      throw invalidArgument(`layer entry "${entry.name}" has ${kind} ${id}, outside the node's mapped ids 0-${MAX_MAPPED_ID}`, { field: entry.name });
    }
  }
}

function asEntryError(entry: string, e: unknown): DomainError | Error {
  if (isDomainError(e)) return e;
  if (e instanceof Error && e.name === 'AbortError') return e;
  return internal(`layer entry "${entry}": ${messageOf(e)}`, { field: entry, cause: e });
}
