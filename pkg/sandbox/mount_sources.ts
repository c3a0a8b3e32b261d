import { spawn } from 'node:child_process';
import type { FileHandle } from 'node:fs/promises';
import { mkdir, readdir, rmdir, unlink, writeFile } from 'node:fs/promises';
import { join, posix } from 'node:path';

import { DomainError, failedPrecondition, internal, invalidArgument } from '../errdefs/errors.js';
import { openBeneath } from '../safepath/beneath.js';
import type { MountRoot } from '../safepath/mount_roots.js';

// The sources of a container's bind mounts, pinned before runc sees them.
// runc resolves a bind mount's source path again when it mounts it, following
// symlinks, so a source checked as a path can be swapped for a symlink (by a
// container sharing the volume) between the check and the mount. Instead each
// source is opened beneath its trusted root (safepath/beneath.ts: no symlink
// followed out of a volume) and the opened descriptor itself is bound, through
// /proc/self/fd/3 of the mount process, at
//     <root>/<container id>/<mount index>
// which only this runtime writes; runc gets that path. The binds live in the
// node's mount namespace only until runc create has made the container's own
// copies (CreateContainer releases them then; RemoveContainer again, for a
// create cut short), or the orphan sweep finds them without a record (ids()).
//
// Propagation: the bind is recursive (submounts of the source come along, as
// with runc's own rbind) and keeps the source's peer group for Bidirectional,
// becomes its slave for HostToContainer and private otherwise, so the
// container's mount relates to the source as it would without the staging.
// Before a release unmounts it, it is made private: an unmount of a peer's
// submount would otherwise propagate to the source's own submounts.

export interface MountSourcesOptions {
  /** A folder of the node namespace's own (its /run), traversable by a pod's nested user namespace. */
  root: string;
  mount: string;
  umount: string;
}

export interface SourceToPin {
  /** The mount's index in the request, for its staged path and error field. */
  index: number;
  hostPath: string;
  containerPath: string;
  propagation: 'PROPAGATION_PRIVATE' | 'PROPAGATION_HOST_TO_CONTAINER' | 'PROPAGATION_BIDIRECTIONAL';
  /** The volume the host path must stay in (the node half's annotation); none: resolved below "/". */
  volume?: MountRoot;
}

const inside = (p: string, dir: string): boolean => p === dir || p.startsWith(dir.endsWith('/') ? dir : `${dir}/`);

export class MountSources {
  constructor(private readonly o: MountSourcesOptions) {}

  dir(id: string): string {
    return join(this.o.root, id);
  }

  /**
   * Opens and binds each source; resolves with the staged path by mount index.
   * On failure what was bound is released; an error names the mount's field.
   */
  async pin(id: string, sources: readonly SourceToPin[]): Promise<Map<number, string>> {
    const out = new Map<number, string>();
    if (sources.length === 0) return out;
    await mkdir(this.o.root, { recursive: true, mode: 0o711 });
    await mkdir(this.dir(id), { mode: 0o711 });
    try {
      for (const s of sources) out.set(s.index, await this.pinOne(id, s));
    } catch (e: unknown) {
      await this.release(id).catch(() => undefined);
      throw e;
    }
    return out;
  }

  private async pinOne(id: string, s: SourceToPin): Promise<string> {
    const field = `config.mounts[${s.index}].host_path`;
    if (!posix.isAbsolute(s.hostPath)) throw invalidArgument(`host_path "${s.hostPath}" is not an absolute path`, { field });
    let root = '/';
    let rel = s.hostPath;
    if (s.volume) {
      const vroot = posix.normalize(s.volume.root);
      const host = posix.normalize(s.hostPath);
      if (!inside(host, vroot)) throw invalidArgument(`host_path "${s.hostPath}" is not inside its volume ${vroot}`, { field });
      root = vroot;
      rel = posix.relative(vroot, host);
    }
    let fh: FileHandle;
    try {
      fh = await openBeneath(root, rel, { field, ...(s.volume?.identity ? { rootIdentity: s.volume.identity } : {}) });
    } catch (e: unknown) {
      // The message names the mount: a refused subPath must say which one.
      const msg = `mount of ${s.hostPath} at ${s.containerPath}: ${e instanceof Error ? e.message : String(e)}`;
      throw e instanceof DomainError ? new DomainError(e.code, msg, { field, cause: e }) : failedPrecondition(msg, { field, cause: e });
    }
    try {
      // A bind that keeps the source's peer group is named so: release makes it private before unmounting it.
      const target = join(this.dir(id), s.propagation === 'PROPAGATION_BIDIRECTIONAL' ? `${s.index}.shared` : String(s.index));
      // A bind needs a mount point of its kind: a folder for a folder, a file for anything else.
      if ((await fh.stat()).isDirectory()) await mkdir(target, { mode: 0o711 });
      else await writeFile(target, '', { mode: 0o600, flag: 'wx' });
      const propagation = s.propagation === 'PROPAGATION_BIDIRECTIONAL' ? [] : s.propagation === 'PROPAGATION_HOST_TO_CONTAINER' ? ['--make-rslave'] : ['--make-rprivate'];
      // -c (no canonicalization): mount must not resolve /proc/self/fd/3 to a path and mount that path.
      const r = await run(this.o.mount, ['-c', '--rbind', ...propagation, '/proc/self/fd/3', target], fh.fd);
      if (r.code !== 0) throw internal(`binding the opened ${s.hostPath} for the container failed: ${r.stderr.trim()}`, { field });
      return target;
    } finally {
      await fh.close();
    }
  }

  /**
   * Unmounts and removes the container's staged sources; idempotent. Never
   * removes anything recursively: a staged folder that cannot be unmounted
   * stays (and the error says so) rather than losing the volume's files.
   */
  async release(id: string): Promise<void> {
    const dir = this.dir(id);
    const names = await readdir(dir).catch((e: NodeJS.ErrnoException) => {
      if (e.code === 'ENOENT') return undefined;
      throw e;
    });
    if (!names) return;
    const stuck: string[] = [];
    // Private first, so the unmount propagates to no peer (see the top of the file); a
    // private or slave bind has no peer and no slave (runc's copy is a slave of the source's group).
    for (const name of names.filter((n) => n.endsWith('.shared'))) await run(this.o.mount, ['-c', '--make-rprivate', join(dir, name)]);
    // One umount for all (those not mounted just fail): a spawn per mount costs pod starts.
    if (names.length > 0) await run(this.o.umount, ['-c', '-l', ...names.map((n) => join(dir, n))]);
    for (const name of names) {
      const target = join(dir, name);
      try {
        await rmdir(target);
      } catch (e: unknown) {
        const code = (e as NodeJS.ErrnoException).code;
        if (code === 'ENOTDIR') await unlink(target).catch(() => stuck.push(name));
        else if (code !== 'ENOENT') stuck.push(name);
      }
    }
    if (stuck.length > 0) throw internal(`the container's pinned mount sources ${stuck.map((n) => join(dir, n)).join(', ')} could not be unmounted and removed`, { field: 'container_id' });
    await rmdir(dir).catch(() => undefined);
  }

  /** Container ids with staged sources (for the orphan sweep: those without a container record are released). */
  async ids(): Promise<string[]> {
    return readdir(this.o.root).catch(() => []);
  }
}

/** A tool with the descriptor as its fd 3. */
function run(file: string, args: readonly string[], fd?: number): Promise<{ code: number | null; stderr: string }> {
  return new Promise((resolve, reject) => {
    const child = spawn(file, args, { stdio: ['ignore', 'ignore', 'pipe', ...(fd === undefined ? [] : [fd])] });
    let stderr = '';
    child.stderr?.on('data', (d: Buffer) => (stderr += d.toString()));
    const timer = setTimeout(() => child.kill('SIGKILL'), 30000);
    child.on('error', (e) => {
      clearTimeout(timer);
      reject(e);
    });
    child.on('close', (code) => {
      clearTimeout(timer);
      resolve({ code, stderr });
    });
  });
}
