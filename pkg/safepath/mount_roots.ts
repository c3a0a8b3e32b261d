import { invalidArgument } from '../errdefs/errors.js';

// What the node half tells the runtime half about the volumes behind a
// container's mounts, in one container annotation (the CRI's Mount has no
// field for it): per container path, the volume folder the host path lies in
// and that folder's identity (device and inode) when the node half checked it.
// The runtime then opens the host path beneath that folder, follows no symlink
// out of it, and refuses a folder that is no longer the one checked, so a
// container swapping a path component for a symlink between the node half's
// check and the bind mount lands nowhere. Mounts without an entry (crictl,
// critest, an upstream kubelet, which binds its subPaths itself) are resolved
// below "/" once, as containerd resolves them.

export const mountRootsAnnotation = 'io.usernode.mount-roots';

export interface MountRoot {
  /** The volume folder (or hostPath file), as the node half resolved it. */
  root: string;
  /** `<st_dev>:<st_ino>` of `root` when the node half checked it. */
  identity?: string;
}

/** The annotation's value: container path → root. */
export function encodeMountRoots(roots: ReadonlyMap<string, MountRoot>): string {
  return JSON.stringify(Object.fromEntries(roots));
}

/** Parses the annotation; a malformed one is the client's error, named by its key. */
export function parseMountRoots(text: string | undefined): Map<string, MountRoot> {
  const out = new Map<string, MountRoot>();
  if (text === undefined || text === '') return out;
  const field = `config.annotations["${mountRootsAnnotation}"]`;
  let v: unknown;
  try {
    v = JSON.parse(text);
  } catch (e: unknown) {
    throw invalidArgument(`is not JSON: ${(e as Error).message}`, { field });
  }
  if (typeof v !== 'object' || v === null || Array.isArray(v)) throw invalidArgument('must be a JSON object of container path → {root, identity}', { field });
  for (const [path, r] of Object.entries(v)) {
    const o = r as Record<string, unknown> | null;
    if (typeof o !== 'object' || o === null || typeof o.root !== 'string' || !o.root.startsWith('/')) throw invalidArgument(`${path}: root must be an absolute path`, { field });
    if (o.identity !== undefined && (typeof o.identity !== 'string' || !/^\d+:\d+$/.test(o.identity))) throw invalidArgument(`${path}: identity must be "<dev>:<ino>"`, { field });
    out.set(path, { root: o.root, ...(typeof o.identity === 'string' ? { identity: o.identity } : {}) });
  }
  return out;
}

/** A file's identity as the annotation carries it. */
export const identityOf = (st: { dev: bigint; ino: bigint }): string => `${st.dev}:${st.ino}`;
