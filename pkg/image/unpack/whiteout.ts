import { lstat, readdir, rm } from 'node:fs/promises';
import { join } from 'node:path';

import { invalidArgument } from '../../errdefs/errors.js';

// Whiteouts (image-spec layer.md "Whiteouts"): a member `.wh.NAME` says NAME
// is deleted from the layers below; `.wh..wh..opq` says its directory hides
// everything the layers below put there. Other `.wh..wh.` names are aufs
// bookkeeping and carry no meaning for the image.

export const WHITEOUT_PREFIX = '.wh.';
export const OPAQUE_WHITEOUT = '.wh..wh..opq';
const AUFS_META_PREFIX = '.wh..wh.';

export type Whiteout = { kind: 'opaque' } | { kind: 'remove'; name: string } | { kind: 'aufs-meta' };

/** What a member's last component means as a whiteout, or undefined for an ordinary name. */
export function parseWhiteout(base: string, entry: string): Whiteout | undefined {
  if (!base.startsWith(WHITEOUT_PREFIX)) return undefined;
  if (base === OPAQUE_WHITEOUT) return { kind: 'opaque' };
  if (base.startsWith(AUFS_META_PREFIX)) return { kind: 'aufs-meta' };
  const name = base.slice(WHITEOUT_PREFIX.length);
  // `.wh..` and `.wh...` would name the directory itself or its parent.
  if (name === '' || name === '.' || name === '..') {
    throw invalidArgument(`layer entry "${entry}" is a whiteout of "${name}", which is not a name in its directory`, { field: entry });
  }
  return { kind: 'remove', name };
}

/**
 * Merge mode's opaque directory: removes from dir everything this layer did
 * not write. A directory this layer wrote, or one holding something it wrote,
 * stays but is emptied the same way, since the lower copy of it is hidden too.
 * Never follows a link: links are entries like any other.
 */
export async function removeLowerContent(dir: string, written: ReadonlySet<string>, holdsWritten: ReadonlySet<string>): Promise<void> {
  for (const name of await readdir(dir)) {
    const path = join(dir, name);
    if (written.has(path) || holdsWritten.has(path)) {
      if ((await lstat(path)).isDirectory()) await removeLowerContent(path, written, holdsWritten);
      continue;
    }
    await rm(path, { recursive: true, force: true });
  }
}
