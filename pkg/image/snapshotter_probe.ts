import { mkdir, mkdtemp, rm, stat, writeFile } from 'node:fs/promises';
import { join } from 'node:path';

import { runTool } from '../netns/exec_tool.js';
import type { Snapshotter } from './layer_store.js';

// Which snapshotter this node can use, found by trying: overlayfs needs an
// overlay mount inside the user namespace (kernel 5.11+, with `userxattr`)
// and overlay whiteouts (0:0 character devices, which a user namespace may
// make since 5.8). Otherwise every layer is a full copy — slower and bigger,
// and said so in Status.

export interface SnapshotterChoice {
  snapshotter: Snapshotter;
  reason: string;
}

export interface ProbeTools {
  mount: string | undefined;
  umount: string | undefined;
  mknod: string | undefined;
}

export async function chooseSnapshotter(scratchParent: string, tools: ProbeTools): Promise<SnapshotterChoice> {
  if (!tools.mount || !tools.umount || !tools.mknod) {
    return { snapshotter: 'copy', reason: 'mount, umount or mknod (util-linux, coreutils) not found' };
  }
  await mkdir(scratchParent, { recursive: true, mode: 0o700 });
  const dir = await mkdtemp(join(scratchParent, 'probe-'));
  const [lower, upper, work, merged] = ['lower', 'upper', 'work', 'merged'].map((n) => join(dir, n)) as [string, string, string, string];
  try {
    for (const d of [lower, upper, work, merged]) await mkdir(d);
    await writeFile(join(lower, 'file'), 'x');
    const wh = await run(tools.mknod, [join(lower, 'gone'), 'c', '0', '0']);
    if (wh) return { snapshotter: 'copy', reason: `cannot make overlay whiteouts: ${wh}` };
    const m = await run(tools.mount, ['-t', 'overlay', 'overlay', '-o', `lowerdir=${lower},upperdir=${upper},workdir=${work},userxattr`, merged]);
    if (m) return { snapshotter: 'copy', reason: `overlayfs is not available in the user namespace: ${m}` };
    try {
      await stat(join(merged, 'file'));
      let whiteoutHides = false;
      try {
        await stat(join(merged, 'gone'));
      } catch {
        whiteoutHides = true;
      }
      if (!whiteoutHides) return { snapshotter: 'copy', reason: 'overlayfs mounted but ignores whiteouts' };
    } finally {
      await run(tools.umount, [merged]);
    }
    return { snapshotter: 'overlayfs', reason: 'overlayfs with userxattr works in the node user namespace' };
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
}

/** Runs a tool; resolves with its error text, or undefined on success. */
async function run(file: string, args: string[]): Promise<string | undefined> {
  try {
    const r = await runTool(file, args);
    return r.code === 0 ? undefined : r.stderr.trim() || `exit code ${r.code}`;
  } catch (e: unknown) {
    return (e as Error).message;
  }
}
