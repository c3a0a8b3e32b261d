import { mkdir, readdir, readFile, rename, rm } from 'node:fs/promises';
import { join } from 'node:path';

import { fsyncDir, isTempName, removeDurable, writeFileDurable } from './durable_file.js';

// A folder of JSON records, one file each, written atomically and durably
// (durable_file.ts: own temp name, fsync, rename, fsync folder), so a crash or
// a power cut leaves the old record or the new one, never half of one.
//
// A record that does not parse (a disk error, a hand edit, a bug) is moved
// aside into <dir>/corrupt/ and reported, never deleted: it may be the only
// pointer to a pod's netns, IP lease and rootfs, and an operator can still
// read it there. Leftover temp files are a crash's and are removed.

export interface MovedAsideRecord {
  /** The record's file as it was. */
  file: string;
  /** Where it is now. */
  movedTo: string;
  error: string;
  /** ISO 8601. */
  at: string;
}

/**
 * Every record moved aside since the process started, for the log, the
 * Status verbose info (`crictl info`) and the usernode_records_moved_aside
 * metric. A process-wide list: the stores are made in several places and
 * each problem must reach the operator whichever found it.
 */
export const movedAsideRecords: MovedAsideRecord[] = [];

export class JsonRecords<T> {
  constructor(
    private readonly dir: string,
    /** The file name (without .json) a record is kept under. */
    private readonly nameOf: (r: T) => string,
  ) {}

  async loadAll(): Promise<T[]> {
    await mkdir(this.dir, { recursive: true, mode: 0o700 });
    const out: T[] = [];
    for (const n of await readdir(this.dir)) {
      if (isTempName(n)) {
        await rm(join(this.dir, n), { force: true });
        continue;
      }
      if (!n.endsWith('.json')) continue;
      const file = join(this.dir, n);
      let text: string;
      try {
        text = await readFile(file, 'utf8');
      } catch (e: unknown) {
        // A folder or an unreadable file under a record's name: not ours to remove either.
        await this.moveAside(n, e);
        continue;
      }
      try {
        const r = JSON.parse(text) as T;
        if (typeof r !== 'object' || r === null || Array.isArray(r)) throw new Error('not a JSON object');
        const want = `${this.nameOf(r)}.json`;
        if (want !== n) throw new Error(`its content names ${want}`);
        out.push(r);
      } catch (e: unknown) {
        await this.moveAside(n, e);
      }
    }
    return out;
  }

  async write(r: T): Promise<void> {
    await writeFileDurable(join(this.dir, `${this.nameOf(r)}.json`), JSON.stringify(r) + '\n');
  }

  async remove(name: string): Promise<void> {
    await removeDurable(join(this.dir, `${name}.json`));
  }

  private async moveAside(name: string, e: unknown): Promise<void> {
    const corrupt = join(this.dir, 'corrupt');
    await mkdir(corrupt, { recursive: true, mode: 0o700 });
    const at = new Date().toISOString();
    const movedTo = join(corrupt, `${name}.${at.replace(/[:.]/g, '-')}`);
    await rename(join(this.dir, name), movedTo);
    await fsyncDir(corrupt);
    await fsyncDir(this.dir);
    movedAsideRecords.push({ file: join(this.dir, name), movedTo, error: e instanceof Error ? e.message : String(e), at });
  }
}
