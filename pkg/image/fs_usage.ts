import { lstat, readdir } from 'node:fs/promises';
import { join } from 'node:path';

// Disk use of a folder tree, as kubelet's image GC and eviction read it from
// ImageFsInfo: bytes actually allocated (st_blocks × 512, so sparse files and
// hard links count once) and inodes.

export interface FsUsage {
  usedBytes: bigint;
  inodesUsed: bigint;
}

export async function fsUsage(root: string): Promise<FsUsage> {
  const seen = new Set<string>();
  let bytes = 0n;
  let inodes = 0n;
  const walk = async (path: string): Promise<void> => {
    let st;
    try {
      st = await lstat(path, { bigint: true });
    } catch {
      return; // Removed while we walked.
    }
    const key = `${st.dev}:${st.ino}`;
    if (seen.has(key)) return;
    seen.add(key);
    bytes += st.blocks * 512n;
    inodes += 1n;
    if (!st.isDirectory()) return;
    let names: string[] = [];
    try {
      names = await readdir(path);
    } catch {
      return;
    }
    for (const n of names) await walk(join(path, n));
  };
  await walk(root);
  return { usedBytes: bytes, inodesUsed: inodes };
}
