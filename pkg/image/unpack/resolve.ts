import type { Stats } from 'node:fs';
import { lstat, mkdir, readlink } from 'node:fs/promises';
import { join, relative, sep } from 'node:path';

import { invalidArgument } from '../../errdefs/errors.js';
import { errnoOf } from './errno.js';

// The directory an entry goes into, found one component at a time below the
// layer root, the way the kernel would inside the container's chroot: a
// symbolic link met on the way is read and its target walked in turn (an
// absolute target restarts at the root, not at the host's /); a `..` that
// would leave the root is refused. The result names only real directories, so
// the kernel's own walk of it later follows no link. This is why nothing here
// uses path.resolve or realpath: both would follow links to the host.
//
// Contract: nobody else changes the tree below root while a layer is applied
// (the applier is its only writer); then the checked path stays what it was.

/** Linux's limit on links followed in one lookup (MAXSYMLINKS). */
const MAX_LINKS = 40;

/**
 * Physical components (all real directories) of the directory reached by
 * walking `components` from root. create: missing directories are made (0755,
 * as tar does for a member's implicit parents); otherwise a missing or
 * non-directory component gives undefined.
 */
export async function resolveDirectory(root: string, components: readonly string[], entry: string, create: true): Promise<string[]>;
export async function resolveDirectory(root: string, components: readonly string[], entry: string, create: boolean): Promise<string[] | undefined>;
export async function resolveDirectory(root: string, components: readonly string[], entry: string, create: boolean): Promise<string[] | undefined> {
  const stack: string[] = [];
  const queue = [...components];
  let links = 0;
  while (queue.length > 0) {
    const c = queue.shift()!;
    if (c === '' || c === '.') continue;
    if (c === '..') {
      if (stack.length === 0) {
        throw invalidArgument(`layer entry "${entry}" resolves through a symbolic link to a path above the layer root`, { field: entry });
      }
      stack.pop();
      continue;
    }
    const path = join(root, ...stack, c);
    const st = await lstatOrUndefined(path);
    if (st === undefined) {
      if (!create) return undefined;
      await mkdir(path, { mode: 0o755 });
      stack.push(c);
      continue;
    }
    if (st.isSymbolicLink()) {
      if (++links > MAX_LINKS) {
        throw invalidArgument(`layer entry "${entry}" resolves through more than ${MAX_LINKS} symbolic links`, { field: entry });
      }
      const target = await readlink(path);
      if (target.startsWith('/')) stack.length = 0;
      queue.unshift(...target.split('/'));
      continue;
    }
    if (!st.isDirectory()) {
      if (!create) return undefined;
      throw invalidArgument(`layer entry "${entry}" needs "${[...stack, c].join('/')}" to be a directory, but it is not`, { field: entry });
    }
    stack.push(c);
  }
  return stack;
}

/** Whether every component of path below root is a real directory (no link), so the kernel's walk of it stays below root. */
export async function isRealDirectoryChain(root: string, path: string): Promise<boolean> {
  const rel = relative(root, path);
  if (rel === '') return true;
  if (rel.startsWith('..')) return false;
  let p = root;
  for (const c of rel.split(sep)) {
    p = join(p, c);
    const st = await lstatOrUndefined(p);
    if (st === undefined || !st.isDirectory()) return false;
  }
  return true;
}

export async function lstatOrUndefined(path: string): Promise<Stats | undefined> {
  try {
    return await lstat(path);
  } catch (e: unknown) {
    const code = errnoOf(e);
    if (code === 'ENOENT' || code === 'ENOTDIR') return undefined;
    throw e;
  }
}
