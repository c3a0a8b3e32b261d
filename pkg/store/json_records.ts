import { mkdir, readdir, readFile, rename, rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';

// A folder of JSON records, one file each, written atomically (temp file +
// rename) so a crash leaves the old record or the new one, never half of one.
// Loading drops leftover temp files and records that do not parse (a write
// that never completed cannot produce one).

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
      if (n.endsWith('.tmp')) {
        await rm(join(this.dir, n), { force: true });
        continue;
      }
      if (!n.endsWith('.json')) continue;
      try {
        out.push(JSON.parse(await readFile(join(this.dir, n), 'utf8')) as T);
      } catch {
        await rm(join(this.dir, n), { force: true });
      }
    }
    return out;
  }

  async write(r: T): Promise<void> {
    const f = join(this.dir, `${this.nameOf(r)}.json`);
    await writeFile(`${f}.tmp`, JSON.stringify(r) + '\n', { mode: 0o600 });
    await rename(`${f}.tmp`, f);
  }

  async remove(name: string): Promise<void> {
    await rm(join(this.dir, `${name}.json`), { force: true });
  }
}
