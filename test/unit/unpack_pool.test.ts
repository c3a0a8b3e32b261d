import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { mkdir, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { gzipSync } from 'node:zlib';

import { pack } from 'tar-stream';

import { isDomainError } from '../../pkg/errdefs/errors.js';
import { UnpackPool } from '../../pkg/image/unpack_pool.js';

// Layers unpacked in worker threads: same result as in-process, errors keep
// their domain code and entry, and a cancelled pull stops its unpack.

async function tarOf(entries: Array<{ name: string; body?: string; type?: 'file' | 'directory' }>): Promise<Buffer> {
  const p = pack();
  const chunks: Buffer[] = [];
  p.on('data', (c: unknown) => chunks.push(c as Buffer));
  const done = new Promise<void>((r) => p.on('end', () => r()));
  for (const e of entries) p.entry({ name: e.name, type: e.type ?? 'file', mode: e.type === 'directory' ? 0o755 : 0o644, mtime: new Date(0) }, e.body ?? '');
  p.finalize();
  await done;
  return Buffer.concat(chunks);
}

describe('UnpackPool', () => {
  let dir: string;
  const pool = new UnpackPool(2);

  before(async () => {
    dir = await mkdtemp(join(tmpdir(), 'unpack-pool-'));
  });

  after(async () => {
    await pool.close();
    await rm(dir, { recursive: true, force: true });
  });

  const job = (blobPath: string, target: string) => ({ blobPath, target, mode: 'merge' as const, preserveOwnership: false, tools: {} });

  test('unpacks a gzip layer in a worker and reports the diff id of the uncompressed tar', async () => {
    const tar = await tarOf([{ name: 'etc', type: 'directory' }, { name: 'etc/hello', body: 'from a worker\n' }]);
    const blob = join(dir, 'layer1.tgz');
    await writeFile(blob, gzipSync(tar));
    const target = join(dir, 'fs1');
    await mkdir(target);
    const r = await pool.run(job(blob, target));
    assert.equal(r.diffId, `sha256:${createHash('sha256').update(tar).digest('hex')}`);
    assert.equal(await readFile(join(target, 'etc', 'hello'), 'utf8'), 'from a worker\n');
  });

  test('runs several layers at once on separate workers', async () => {
    const jobs = await Promise.all(
      [1, 2, 3, 4].map(async (i) => {
        const blob = join(dir, `multi${i}.tgz`);
        await writeFile(blob, gzipSync(await tarOf([{ name: `f${i}`, body: `layer ${i}\n` }])));
        const target = join(dir, `multi-fs${i}`);
        await mkdir(target);
        return { blob, target, i };
      }),
    );
    await Promise.all(jobs.map((j) => pool.run(job(j.blob, j.target))));
    for (const j of jobs) assert.equal(await readFile(join(j.target, `f${j.i}`), 'utf8'), `layer ${j.i}\n`);
  });

  test('a hostile entry fails with InvalidArgument naming it, across the thread boundary', async () => {
    const blob = join(dir, 'hostile.tgz');
    await writeFile(blob, gzipSync(await tarOf([{ name: '../escaped', body: 'x' }])));
    const target = join(dir, 'deep', 'fs');
    await mkdir(target, { recursive: true });
    await assert.rejects(pool.run(job(blob, target)), (e: unknown) => {
      assert.ok(isDomainError(e), 'not a domain error');
      assert.equal(e.code, 'InvalidArgument');
      assert.equal(e.field, '../escaped');
      return true;
    });
    await assert.rejects(readFile(join(dir, 'deep', 'escaped')));
  });

  test('an aborted job stops and rejects', async () => {
    const big = await tarOf(Array.from({ length: 400 }, (_, i) => ({ name: `f${i}`, body: 'y'.repeat(64 * 1024) })));
    const blob = join(dir, 'big.tgz');
    await writeFile(blob, gzipSync(big));
    const target = join(dir, 'big-fs');
    await mkdir(target);
    const ctl = new AbortController();
    const running = pool.run(job(blob, target), ctl.signal);
    ctl.abort();
    await assert.rejects(running);
  });

  test('ends workers that sat idle, and starts one again for the next job', async () => {
    const quick = new UnpackPool(2, 50);
    try {
      const blob = join(dir, 'idle.tgz');
      await writeFile(blob, gzipSync(await tarOf([{ name: 'idle', body: 'x' }])));
      const first = join(dir, 'idle-fs1');
      await mkdir(first);
      await quick.run(job(blob, first));
      assert.equal(quick.workerCount, 1);
      await new Promise((r) => setTimeout(r, 300));
      assert.equal(quick.workerCount, 0, 'an idle worker was kept');
      const second = join(dir, 'idle-fs2');
      await mkdir(second);
      await quick.run(job(blob, second));
      assert.equal(await readFile(join(second, 'idle'), 'utf8'), 'x');
    } finally {
      await quick.close();
    }
  });
});
