import { spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { constants, open, rename, rm } from 'node:fs/promises';
import { basename, dirname, join } from 'node:path';

// Writes that survive a power cut, not just a crash of the agent: rename(2)
// is atomic, but without fsync the kernel may write the new name before the
// data it points to (ext4 without auto_da_alloc, xfs), so after a power cut
// the record is there and empty. The order is containerd's (metadata, content
// ingest) and the one ext4's documentation asks for:
//   write temp → fsync temp → rename → fsync folder.

/**
 * A temp name of its own for each writer (pid + random), in the target's
 * folder (rename does not cross file systems): two writers of one record
 * never write into one temp file.
 */
export function tempNameFor(path: string): string {
  return join(dirname(path), `.${basename(path)}.${process.pid}.${randomBytes(6).toString('hex')}.tmp`);
}

/** True for the names tempNameFor makes (and the older `<name>.tmp`): leftovers of a crash. */
export function isTempName(name: string): boolean {
  return name.endsWith('.tmp');
}

/** fsync of a folder: its entries (a rename, a new or removed name) are on disk. */
export async function fsyncDir(dir: string): Promise<void> {
  const fh = await open(dir, 'r');
  try {
    await fh.sync();
  } finally {
    await fh.close();
  }
}

/** Replaces `path` with `data` atomically and durably. */
export async function writeFileDurable(path: string, data: string | Buffer, mode = 0o600): Promise<void> {
  const tmp = tempNameFor(path);
  try {
    const fh = await open(tmp, 'wx', mode);
    try {
      await fh.writeFile(data);
      await fh.sync();
    } finally {
      await fh.close();
    }
    await rename(tmp, path);
  } catch (e: unknown) {
    await rm(tmp, { force: true });
    throw e;
  }
  await fsyncDir(dirname(path));
}

/** Removes `path` and makes the removal durable (a record that comes back after a power cut would resurrect a pod). */
export async function removeDurable(path: string): Promise<void> {
  await rm(path, { force: true });
  await fsyncDir(dirname(path)).catch((e: NodeJS.ErrnoException) => {
    // No folder, no entry to make durable.
    if (e.code !== 'ENOENT') throw e;
  });
}

/**
 * Flushes the file system holding `dir` (syncfs(2), through `sync -f`): a
 * layer tree of thousands of files costs one call instead of one fsync each.
 */
export async function syncFileSystem(dir: string, sync = '/bin/sync'): Promise<void> {
  await new Promise<void>((resolve, reject) => {
    const child = spawn(sync, ['-f', dir], { stdio: ['ignore', 'ignore', 'pipe'] });
    let err = '';
    child.stderr.on('data', (c: Buffer) => (err += c.toString()));
    child.on('error', reject);
    child.on('close', (code) => (code === 0 ? resolve() : reject(new Error(`${sync} -f ${dir}: exit code ${code}: ${err.trim()}`))));
  });
}

/**
 * fsync of every regular file and folder under `dir` (links and devices have
 * no data of their own): syncFileSystem's alternative, measured in
 * BENCHMARKS.md. An entry this process may not open (a layer's mode-000 file
 * when not running as the node's root) is skipped, not an error: the layer's
 * parent folder entries are still synced.
 */
export async function fsyncTree(dir: string): Promise<void> {
  const { opendir } = await import('node:fs/promises');
  const skippable = (e: unknown): boolean => ['EACCES', 'EPERM', 'ENOENT', 'ELOOP'].includes((e as NodeJS.ErrnoException).code ?? '');
  const syncOne = async (p: string, flags: number): Promise<void> => {
    const fh = await open(p, flags).catch((e: unknown) => {
      if (skippable(e)) return undefined;
      throw e;
    });
    if (!fh) return;
    try {
      await fh.sync();
    } finally {
      await fh.close();
    }
  };
  const walk = async (d: string): Promise<void> => {
    const entries = await opendir(d).catch((e: unknown) => {
      if (skippable(e)) return undefined;
      throw e;
    });
    if (entries) {
      for await (const e of entries) {
        const p = join(d, e.name);
        if (e.isDirectory()) await walk(p);
        // O_NOFOLLOW: a file swapped for a link meanwhile is never followed out of the tree.
        else if (e.isFile()) await syncOne(p, constants.O_RDONLY | constants.O_NOFOLLOW | constants.O_NONBLOCK);
      }
    }
    await syncOne(d, constants.O_RDONLY | constants.O_DIRECTORY);
  };
  await walk(dir);
}
