import { chmod, lchown, lstat, readdir } from 'node:fs/promises';
import { join } from 'node:path';

// A container of a pod with its own user namespace sees the node's ids through
// the pod's mapping: a file the image owns as uid 0 must be owned by the pod's
// host id for its root to own it. Idmapped mounts would do that without
// touching a file, but neither overlayfs nor the host's filesystems can be
// idmapped from inside a user namespace (measured: EINVAL and EPERM), so the
// container's private copy of the image is chowned once, as containerd's
// snapshotters do when idmapped mounts are unavailable.

export interface IdRange {
  /** First id inside the pod. */
  containerId: number;
  /** The node id it is. */
  hostId: number;
  length: number;
}

export interface IdShift {
  uids: IdRange[];
  gids: IdRange[];
}

/** The node id of container id `id` under `ranges`; ids the pod does not map keep the pod's overflow id 65534, if mapped. */
export function shiftedId(id: number, ranges: readonly IdRange[]): number | undefined {
  for (const r of ranges) if (id >= r.containerId && id < r.containerId + r.length) return r.hostId + (id - r.containerId);
  for (const r of ranges) if (65534 >= r.containerId && 65534 < r.containerId + r.length) return r.hostId + (65534 - r.containerId);
  return undefined;
}

/**
 * Re-owns every entry under `root` (the tree's ids read as the pod's) to the
 * node ids the pod's mapping gives them. Hard links are shifted once. chown
 * clears set-user-ID and set-group-ID bits; they are put back.
 */
export async function shiftTree(root: string, shift: IdShift): Promise<number> {
  const done = new Set<string>();
  let count = 0;
  const visit = async (path: string): Promise<void> => {
    const st = await lstat(path);
    const key = `${st.dev}:${st.ino}`;
    if (!done.has(key)) {
      done.add(key);
      const uid = shiftedId(st.uid, shift.uids);
      const gid = shiftedId(st.gid, shift.gids);
      if (uid !== undefined && gid !== undefined && (uid !== st.uid || gid !== st.gid)) {
        await lchown(path, uid, gid);
        count++;
        if (!st.isSymbolicLink() && (st.mode & 0o6000) !== 0) await chmod(path, st.mode & 0o7777);
      }
    }
    if (st.isDirectory()) {
      for (const name of await readdir(path)) await visit(join(path, name));
    }
  };
  await visit(root);
  return count;
}
