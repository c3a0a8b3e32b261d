import { constants } from 'node:fs';
import { type FileHandle, mkdir, open, readlink } from 'node:fs/promises';
import { posix } from 'node:path';

import { DomainError, failedPrecondition, invalidArgument, notFound, permissionDenied } from '../errdefs/errors.js';

// Opening a path below a trusted folder without a check-then-use race (the
// CVE-2017-1002101 class): kubelet's subpath_linux.go walks a subPath with
// openat(O_NOFOLLOW) one component at a time from the volume's root and binds
// the final descriptor, so a container that swaps a component for a symlink
// between the check and the mount cannot redirect it.
//
// Node has no openat; `open("/proc/self/fd/<dir>/<name>")` is one: the kernel
// jumps to the very directory the descriptor holds (a magic link) and looks up
// `name` in it, and O_NOFOLLOW keeps a final symlink from being followed. A
// symlink met on the way is read and its target walked the same way, staying
// beneath the root: inside a volume a symlink that leads out of it is refused
// (kubelet refuses such subPaths); below "/" nothing can lead out, so it is
// the kernel's own resolution, only done once.

/** O_PATH (Linux; not in fs.constants): a descriptor that names a file without opening it for I/O. */
export const O_PATH = 0o10000000;
const O_CLOEXEC = 0o2000000;
const pathFlags = O_PATH | constants.O_NOFOLLOW | O_CLOEXEC;
/** As the kernel's MAXSYMLINKS. */
const maxSymlinks = 40;

export interface BeneathOptions {
  /** The request field errors name. */
  field: string;
  /** Missing folders on the way (and at the end) are made, with this mode, as kubelet's doSafeMakeDir does. */
  makeDirs?: number;
  /** `<dev>:<ino>` the root must still have (it was checked as that file): a root swapped since is refused. */
  rootIdentity?: string;
}

const isUnder = (p: string, dir: string): boolean => dir === '/' || p === dir || p.startsWith(`${dir}/`);
const fdPath = (fd: number, name?: string): string => (name === undefined ? `/proc/self/fd/${fd}` : `/proc/self/fd/${fd}/${name}`);
const parts = (p: string): string[] => p.split('/').filter((x) => x !== '' && x !== '.');
const errno = (e: unknown): string | undefined => (e as NodeJS.ErrnoException).code;

/**
 * Opens `root/rel` as an O_PATH descriptor without following any symlink out
 * of `root` (symlinks in `root` itself are followed: it is trusted). Inside a
 * root other than "/", `..` above the root and a symlink leading out of it are
 * refused. The caller owns (and closes) the handle.
 */
export async function openBeneath(root: string, rel: string, o: BeneathOptions): Promise<FileHandle> {
  if (!posix.isAbsolute(root)) throw invalidArgument(`${root} is not an absolute path`, { field: o.field });
  if (root.includes('\0') || rel.includes('\0')) throw invalidArgument('a path must not contain a NUL byte', { field: o.field });
  const top = posix.normalize(root);
  const shown = (walked: string[]): string => posix.join(top, ...walked);
  // The folders walked so far, root first; the last is where the next name is looked up.
  const stack: Array<{ fh: FileHandle; name: string }> = [];
  const closeAll = async (): Promise<void> => {
    for (const s of stack.splice(0)) await s.fh.close().catch(() => undefined);
  };
  try {
    const queue = parts(rel);
    // The root may be a file when nothing is walked below it (a hostPath of type File).
    stack.push({ fh: await open(top, O_PATH | O_CLOEXEC | (queue.length > 0 ? constants.O_DIRECTORY : 0)).catch((e: unknown) => throwFs(e, top, o.field)), name: '' });
    if (o.rootIdentity !== undefined) {
      const st = await stack[0]!.fh.stat({ bigint: true });
      if (`${st.dev}:${st.ino}` !== o.rootIdentity) throw failedPrecondition(`${top} is no longer the file that was checked (it was replaced or a part of its path now leads elsewhere)`, { field: o.field });
    }
    let links = 0;
    while (queue.length > 0) {
      const name = queue.shift()!;
      const dir = stack[stack.length - 1]!;
      const walked = stack.slice(1).map((s) => s.name);
      if (name === '..') {
        if (stack.length > 1) await stack.pop()!.fh.close();
        else if (top !== '/') throw permissionDenied(`${shown([...walked, ...queue])} leads out of ${top} ("..")`, { field: o.field });
        continue;
      }
      let fh: FileHandle;
      try {
        fh = await open(fdPath(dir.fh.fd, name), pathFlags);
      } catch (e: unknown) {
        if (errno(e) !== 'ENOENT' || o.makeDirs === undefined) throwFs(e, shown([...walked, name]), o.field);
        // mkdir never follows a symlink in the final name: one planted meanwhile fails it with EEXIST, and the open below sees it.
        await mkdir(fdPath(dir.fh.fd, name), { mode: o.makeDirs }).catch((err: unknown) => {
          if (errno(err) !== 'EEXIST') throwFs(err, shown([...walked, name]), o.field);
        });
        fh = await open(fdPath(dir.fh.fd, name), pathFlags).catch((err: unknown) => throwFs(err, shown([...walked, name]), o.field));
      }
      const st = await fh.stat();
      if (st.isSymbolicLink()) {
        let target: string | undefined;
        try {
          if (++links > maxSymlinks) throw failedPrecondition(`${shown([...walked, name])}: too many levels of symbolic links`, { field: o.field });
          // Read through the parent's descriptor: whatever it says is then walked beneath the root like any path.
          target = await readlink(fdPath(dir.fh.fd, name)).catch((e: unknown) => {
            // Renamed or replaced since it was opened: look the name up again.
            if (errno(e) === 'ENOENT' || errno(e) === 'EINVAL') return undefined;
            throw e;
          });
        } finally {
          await fh.close();
        }
        if (target === undefined) {
          queue.unshift(name);
          continue;
        }
        if (posix.isAbsolute(target)) {
          if (!isUnder(posix.normalize(target), top)) throw permissionDenied(`${shown([...walked, name])} is a symlink to ${target}, outside ${top}`, { field: o.field });
          while (stack.length > 1) await stack.pop()!.fh.close();
          queue.unshift(...parts(posix.relative(top, posix.normalize(target))));
        } else queue.unshift(...parts(target));
        continue;
      }
      if (queue.length > 0 && !st.isDirectory()) {
        await fh.close();
        throw failedPrecondition(`${shown([...walked, name])} is not a folder`, { field: o.field });
      }
      stack.push({ fh, name });
    }
    const last = stack.pop()!;
    await closeAll();
    return last.fh;
  } catch (e: unknown) {
    await closeAll();
    throw e;
  }
}

function throwFs(e: unknown, path: string, field: string): never {
  if (e instanceof DomainError) throw e;
  const code = errno(e);
  const why = e instanceof Error ? e.message.replace(/^[A-Z]+: /, '') : String(e);
  if (code === 'ENOENT') throw notFound(`${path} does not exist`, { field, cause: e });
  if (code === 'EACCES' || code === 'EPERM') throw permissionDenied(`${path} cannot be reached: ${why}`, { field, cause: e });
  if (code === 'ENOTDIR') throw failedPrecondition(`${path}: a part of it is not a folder`, { field, cause: e });
  throw failedPrecondition(`${path} cannot be opened: ${why}`, { field, cause: e });
}

/** The path the kernel now gives an opened descriptor (for messages and checks, never to open again). */
export async function pathOf(fh: FileHandle): Promise<string> {
  return readlink(fdPath(fh.fd));
}
