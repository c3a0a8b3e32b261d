import assert from 'node:assert/strict';
import { appendFile, mkdir, open, rename, rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { PassThrough } from 'node:stream';
import { describe, test } from 'node:test';

import { findTailStart, followCriLog, parseCriLog, readCriLog, renderLogs, tailCriLog } from '../../pkg/node/cri_log.js';
import { followCriLog as followForAttach } from '../../pkg/sandbox/cri_log_follow.js';
import { tempFolders } from '../lib/unit.js';

// Reading container logs from the end: --tail=N and limitBytes read what
// they return (checked by counting the bytes read), and give what the
// whole-file parser gives, for any block size — lines longer than a block,
// P chunks, a last line with no newline, malformed lines.

const folders = tempFolders('cri-log-tail-');

const t = (i: number): string => `2026-12-01T10:00:${String(i % 60).padStart(2, '0')}.${String(i).padStart(9, '0')}Z`;

/** A log in time order with every shape conmon (or a cut write) leaves. */
function sampleLog(): string {
  const raw: string[] = [];
  let i = 0;
  raw.push(`${t(i++)} stdout F first`);
  raw.push(`${t(i++)} stderr F an error`);
  raw.push(`${t(i++)} stdout P ${'x'.repeat(300)}`);
  raw.push(`${t(i++)} stdout P ${'y'.repeat(300)}`);
  raw.push(`${t(i++)} stdout F end of a long line`);
  raw.push('garbage cut mid-write');
  raw.push(`${t(i++)} stdout F ${'é'.repeat(100)} multibyte`);
  raw.push('');
  raw.push(`${t(i++)} stdout F `);
  for (let k = 0; k < 20; k++) raw.push(`${t(i++)} ${k % 3 ? 'stdout' : 'stderr'} F line ${k}`);
  raw.push(`${t(i++)} stdout P partial at the end`);
  return raw.join('\n');
}

async function read(path: string, o: Parameters<typeof readCriLog>[1], blockBytes: number): Promise<string> {
  let out = '';
  await readCriLog(path, o, (s) => void (out += s), { blockBytes });
  return out;
}

describe('CRI log read from the end', () => {
  test('--tail=N gives what the whole-file parser gives, for every N and block size', async () => {
    const dir = await folders.fresh('same');
    const text = sampleLog();
    const lines = parseCriLog(text);
    for (const [name, body] of [['cut', text], ['whole', `${text}\n`], ['ends-with-F', `${text}\n${t(59)} stdout F last\n`]] as const) {
      const path = join(dir, `${name}.log`);
      await writeFile(path, body);
      const all = parseCriLog(body);
      for (const block of [13, 64, 1000, 65536]) {
        assert.equal(await read(path, {}, block), renderLogs(all, {}), `${name}, block ${block}: whole log`);
        for (let n = 0; n <= all.length + 2; n++) {
          assert.equal(await read(path, { tailLines: n }, block), renderLogs(all, { tailLines: n }), `${name}, block ${block}, tail ${n}`);
        }
        assert.equal(await read(path, { tailLines: 3, timestamps: true }, block), renderLogs(all, { tailLines: 3, timestamps: true }));
        assert.equal(await read(path, { stream: 'stderr' }, block), renderLogs(all, { stream: 'stderr' }));
        assert.equal(await read(path, { limitBytes: 350 }, block), renderLogs(all, { limitBytes: 350 }));
        assert.equal(await read(path, { tailLines: 5, sinceNs: all[all.length - 3]!.timeNs }, block), renderLogs(all, { tailLines: 5, sinceNs: all[all.length - 3]!.timeNs }));
      }
    }
    assert.ok(lines.some((l) => l.text.length > 600), 'the sample has a line longer than the blocks');
    assert.equal(await read(join(dir, 'missing.log'), { tailLines: 1 }, 64), '', 'a missing log is empty');
  });

  test('tailCriLog: the last lines for a termination message', async () => {
    const dir = await folders.fresh('message');
    const path = join(dir, '0.log');
    await writeFile(path, `${sampleLog()}\n`);
    assert.deepEqual((await tailCriLog(path, 2)).map((l) => l.text), ['line 19\n', 'partial at the end']);
    assert.deepEqual(await tailCriLog(join(dir, 'none.log'), 2), []);
  });

  test('--tail=1 and limitBytes read a few blocks of a large log, not the file', async () => {
    const dir = await folders.fresh('large');
    const path = join(dir, '0.log');
    const row = (i: number): string => `${t(i)} stdout F ${String(i).padStart(8, '0')} ${'z'.repeat(100)}\n`;
    const fh = await open(path, 'w');
    let chunk = '';
    for (let i = 0; i < 80000; i++) {
      chunk += row(i);
      if (chunk.length > 1 << 20) {
        await fh.write(chunk);
        chunk = '';
      }
    }
    await fh.write(chunk);
    await fh.close();
    const r = await open(path, 'r');
    let bytesRead = 0;
    const counting = {
      read: async (b: Buffer, off: number, len: number, pos: number) => {
        const got = await r.read(b, off, len, pos);
        bytesRead += got.bytesRead;
        return got;
      },
    } as unknown as import('node:fs/promises').FileHandle;
    const size = (await r.stat()).size;
    assert.ok(size > 10 * 1024 * 1024);
    const start = await findTailStart(counting, size, 1);
    assert.equal(size - start, row(79999).length);
    assert.ok(bytesRead <= 65536 + 64, `--tail=1 read ${bytesRead} of ${size} bytes`);
    bytesRead = 0;
    await findTailStart(counting, size, 1000);
    assert.ok(bytesRead <= 1000 * row(0).length + 2 * 65536, `--tail=1000 read ${bytesRead} bytes`);
    await r.close();
    assert.equal(await read(path, { tailLines: 1 }, 65536), row(79999).slice(t(0).length + 10));
    assert.equal(await read(path, { limitBytes: 20 }, 65536), row(0).slice(t(0).length + 10, t(0).length + 30));
  });
});

describe('following a rotated log', () => {
  test('kubectl logs -f: the rest of the renamed file, then the new file from its top', async () => {
    const dir = await folders.fresh('follow-rotate');
    const path = join(dir, '0.log');
    await writeFile(path, `${t(0)} stdout F one\n${t(1)} stdout F two\n`);
    let out = '';
    let running = true;
    const done = followCriLog(path, { tailLines: 1, running: async () => running, signal: new AbortController().signal, write: (s) => void (out += s), pollMs: 50, blockBytes: 16 });
    const until = async (f: () => boolean): Promise<void> => {
      for (let i = 0; i < 200 && !f(); i++) await new Promise((r) => setTimeout(r, 20));
      assert.ok(f(), `got ${JSON.stringify(out)}`);
    };
    await until(() => out === 'two\n');
    // kubelet's rotation: rename, the runtime writes its last bytes to the old file, then a new file appears.
    await rename(path, `${path}.20261201-100000`);
    await appendFile(`${path}.20261201-100000`, `${t(2)} stdout P thr\n`);
    await writeFile(path, `${t(3)} stdout F ee\n${t(4)} stdout F four ${'w'.repeat(100)}\n`);
    await until(() => out.includes('four'));
    running = false;
    await done;
    assert.equal(out, `two\nthree\nfour ${'w'.repeat(100)}\n`);
  });

  test('attach: the follower survives its file turning into something unreadable, with no unhandled rejection', async () => {
    const dir = await folders.fresh('attach');
    const path = join(dir, '0.log');
    await writeFile(path, `${t(0)} stdout F before\n`);
    const rejections: unknown[] = [];
    const onRejection = (e: unknown): void => void rejections.push(e);
    process.on('unhandledRejection', onRejection);
    const stdout = new PassThrough();
    let seen = '';
    stdout.on('data', (d: Buffer) => (seen += d.toString()));
    const errors: unknown[] = [];
    const f = await followForAttach(path, { stdout }, { onError: (e) => errors.push(e) });
    try {
      await appendFile(path, `${t(1)} stdout F after\n`);
      for (let i = 0; i < 100 && !seen.includes('after'); i++) await new Promise((r) => setTimeout(r, 20));
      assert.equal(seen, 'after\n');
      // The log path becomes a folder: every open and read of it fails.
      await rm(path);
      await mkdir(path);
      for (let i = 0; i < 100 && errors.length === 0; i++) await new Promise((r) => setTimeout(r, 20));
      assert.ok(errors.length > 0, 'the failing reads were not reported');
      await rm(path, { recursive: true });
      await writeFile(path, `${t(2)} stdout F back\n`);
      for (let i = 0; i < 100 && !seen.includes('back'); i++) await new Promise((r) => setTimeout(r, 20));
      assert.equal(seen, 'after\nback\n');
      await new Promise((r) => setTimeout(r, 100));
      assert.deepEqual(rejections, []);
    } finally {
      f.stop();
      process.off('unhandledRejection', onRejection);
    }
  });
});
