import { chmod, lstat, mkdir, mkdtemp, readdir, readFile, readlink, rename, rm, symlink, unlink, writeFile } from 'node:fs/promises';
import { dirname, join } from 'node:path';

import { invalidArgument } from '../errdefs/errors.js';

// A folder whose files change all at once, as kubelet's AtomicWriter keeps
// configMap, secret, downwardAPI and projected volumes: the files live in a
// timestamped folder `..2026_12_01_16_02_41.xxxxxx`, `..data` is a symlink to
// it, and each top-level name of the payload is a symlink through `..data`.
// An update writes a new timestamped folder and swaps `..data` with one
// rename(2), so a reader in the container sees the old set or the new one,
// never a mix; then the old folder goes.
//
//   vol/
//     ..2026_12_01_16_02_41.Ab12Cd/   ca.crt  namespace  token
//     ..data -> ..2026_12_01_16_02_41.Ab12Cd
//     ca.crt -> ..data/ca.crt
//     token -> ..data/token

export interface PayloadFile {
  data: Buffer;
  /** File mode bits (0-0777). */
  mode: number;
}

/** Relative path → content. */
export type Payload = Map<string, PayloadFile>;

const dataLink = '..data';

function stamp(ms: number): string {
  const d = new Date(ms);
  const p = (n: number): string => String(n).padStart(2, '0');
  return `..${d.getUTCFullYear()}_${p(d.getUTCMonth() + 1)}_${p(d.getUTCDate())}_${p(d.getUTCHours())}_${p(d.getUTCMinutes())}_${p(d.getUTCSeconds())}.`;
}

function checkPath(path: string): void {
  const parts = path.split('/');
  if (path === '' || path.startsWith('/') || parts.includes('..') || parts.includes('') || parts[0]!.startsWith('..')) {
    throw invalidArgument(`${JSON.stringify(path)} is not a file name a volume may hold (relative, no '..', not starting with '..')`, { field: path });
  }
}

/** Every file under `dir`, relative path → content and mode. */
async function current(dir: string): Promise<Payload> {
  const out: Payload = new Map();
  const walk = async (rel: string): Promise<void> => {
    for (const e of await readdir(join(dir, rel), { withFileTypes: true })) {
      const p = rel === '' ? e.name : `${rel}/${e.name}`;
      if (e.isDirectory()) await walk(p);
      else if (e.isFile()) out.set(p, { data: await readFile(join(dir, p)), mode: (await lstat(join(dir, p))).mode & 0o777 });
    }
  };
  await walk('');
  return out;
}

function samePayload(a: Payload, b: Payload): boolean {
  if (a.size !== b.size) return false;
  for (const [p, f] of a) {
    const g = b.get(p);
    if (!g || g.mode !== f.mode || !g.data.equals(f.data)) return false;
  }
  return true;
}

/**
 * Makes `dir` hold exactly `payload`; true when it changed. Idempotent, and
 * safe to call again after a crash midway: a half-written timestamped folder
 * is not yet `..data`, and is removed by the next call.
 */
export async function writeAtomically(dir: string, payload: Payload, now: () => number = Date.now): Promise<boolean> {
  for (const p of payload.keys()) checkPath(p);
  await mkdir(dir, { recursive: true, mode: 0o755 });
  const old = await readlink(join(dir, dataLink)).catch(() => undefined);
  const oldFiles = old ? await current(join(dir, old)).catch(() => undefined) : undefined;
  const changed = !oldFiles || !samePayload(oldFiles, payload);
  let live = old;
  if (changed) {
    const ts = await mkdtemp(join(dir, stamp(now())));
    try {
      await chmod(ts, 0o755);
      for (const [p, f] of payload) {
        const file = join(ts, p);
        await mkdir(dirname(file), { recursive: true, mode: 0o755 });
        await writeFile(file, f.data, { mode: f.mode });
        // writeFile's mode passes through the umask.
        await chmod(file, f.mode);
      }
      const tmp = join(dir, `${dataLink}_tmp`);
      await rm(tmp, { force: true });
      await symlink(ts.slice(dir.length + 1), tmp);
      await rename(tmp, join(dir, dataLink));
    } catch (e: unknown) {
      await rm(ts, { recursive: true, force: true });
      throw e;
    }
    live = ts.slice(dir.length + 1);
  }
  // The visible names: one symlink per top-level name through ..data; others go.
  const wanted = new Set([...payload.keys()].map((p) => p.split('/')[0]!));
  for (const name of wanted) {
    const link = join(dir, name);
    const target = `${dataLink}/${name}`;
    const have = await readlink(link).catch(() => undefined);
    if (have === target) continue;
    await rm(link, { recursive: true, force: true });
    await symlink(target, link);
  }
  for (const e of await readdir(dir)) {
    if (e === dataLink || e === live) continue;
    // An old timestamped folder, a leftover ..data_tmp, or a name no longer in the payload.
    if (e.startsWith('..') || !wanted.has(e)) {
      const st = await lstat(join(dir, e)).catch(() => undefined);
      if (st?.isSymbolicLink()) await unlink(join(dir, e)).catch(() => undefined);
      else await rm(join(dir, e), { recursive: true, force: true });
    }
  }
  return changed;
}
