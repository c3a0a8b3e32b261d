import assert from 'node:assert/strict';
import { appendFile, truncate, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { describe, test } from 'node:test';

import { CriLogParser, followCriLog, rfc3339Ns } from '../../pkg/node/cri_log.js';
import { parseLogQuery } from '../../pkg/node/kubelet_logs.js';
import { KubeletApiError } from '../../pkg/node/kubelet_pods.js';
import { tempFolders } from '../lib/unit.js';

// /containerLogs' query as kubelet reads it, and following a CRI log file
// while a "container" writes to it.

const folders = tempFolders('kubelet-logs-');

const bad = (q: string): string => {
  try {
    parseLogQuery(new URLSearchParams(q));
  } catch (e: unknown) {
    assert.ok(e instanceof KubeletApiError);
    assert.equal(e.status, 400);
    return e.message;
  }
  assert.fail(`${q} was accepted`);
};

describe('the /containerLogs query', () => {
  test("kubelet's options parsed; since in seconds counts back from now", () => {
    assert.deepEqual(parseLogQuery(new URLSearchParams('follow=true&timestamps=1&tailLines=5&limitBytes=100&previous=false')), {
      follow: true,
      previous: false,
      timestamps: true,
      tailLines: 5,
      limitBytes: 100,
    });
    assert.equal(parseLogQuery(new URLSearchParams('sinceSeconds=10'), () => 1_000_000).sinceNs, 990_000n * 1_000_000n);
    assert.equal(parseLogQuery(new URLSearchParams('sinceTime=2026-12-01T10:00:00Z')).sinceNs, rfc3339Ns('2026-12-01T10:00:00Z'));
    assert.equal(parseLogQuery(new URLSearchParams('stream=Stderr')).stream, 'stderr');
  });

  test('bad values are 400 naming the parameter', () => {
    assert.match(bad('tailLines=-1'), /^tailLines: .*greater than or equal to 0/);
    assert.match(bad('tailLines=ten'), /^tailLines: invalid value "ten"/);
    assert.match(bad('limitBytes=0'), /^limitBytes: /);
    assert.match(bad('sinceSeconds=0'), /^sinceSeconds: /);
    assert.match(bad('follow=yes'), /^follow: invalid value "yes"/);
    assert.match(bad('sinceTime=yesterday'), /^sinceTime: /);
    assert.match(bad('sinceSeconds=5&sinceTime=2026-12-01T10:00:00Z'), /at most one of sinceTime or sinceSeconds/);
    assert.match(bad('stream=both'), /^stream: /);
  });
});

describe('following a CRI log', () => {
  test('a line cut mid-write and P chunks wait for the rest', () => {
    const p = new CriLogParser();
    assert.deepEqual(p.push('2026-12-01T10:00:00Z stdout P hel'), []);
    assert.deepEqual(p.push('lo\n2026-12-01T10:00:01Z stdout P wor'), []);
    assert.deepEqual(p.push('ld\n2026-12-01T10:00:02Z stdout F !\n').map((l) => l.text), ['helloworld!\n']);
    assert.deepEqual(p.push('2026-12-01T10:00:03Z stderr P tail').length, 0);
    assert.deepEqual(p.flush().map((l) => l.text), ['tail']);
  });

  test('the tail first, then lines as they are written, across a rotation, until the container ends', async () => {
    const dir = await folders.fresh('follow');
    const path = join(dir, '0.log');
    await writeFile(path, ['2026-12-01T10:00:00Z stdout F one', '2026-12-01T10:00:01Z stdout F two', '2026-12-01T10:00:02Z stderr F three', ''].join('\n'));
    let out = '';
    let running = true;
    const done = followCriLog(path, { tailLines: 2, timestamps: false, running: async () => running, signal: new AbortController().signal, write: (t) => void (out += t), pollMs: 50 });
    const until = async (f: () => boolean): Promise<void> => {
      for (let i = 0; i < 100 && !f(); i++) await new Promise((r) => setTimeout(r, 20));
      assert.ok(f(), `got ${JSON.stringify(out)}`);
    };
    await until(() => out === 'two\nthree\n');
    await appendFile(path, '2026-12-01T10:00:03Z stdout F four\n');
    await until(() => out.endsWith('four\n'));
    await truncate(path, 0);
    await appendFile(path, '2026-12-01T10:00:04Z stdout F five\n2026-12-01T10:00:05Z stdout P six');
    await until(() => out.endsWith('five\n'));
    running = false;
    await done;
    assert.equal(out, 'two\nthree\nfour\nfive\nsix');
  });

  test('limitBytes ends following; so does the client leaving', async () => {
    const dir = await folders.fresh('limit');
    const path = join(dir, '0.log');
    await writeFile(path, '2026-12-01T10:00:00Z stdout F 12345\n');
    let out = '';
    const limited = followCriLog(path, { limitBytes: 9, running: async () => true, signal: new AbortController().signal, write: (t) => void (out += t), pollMs: 50 });
    await new Promise((r) => setTimeout(r, 100));
    await appendFile(path, '2026-12-01T10:00:01Z stdout F 67890\n');
    await limited;
    assert.equal(out, '12345\n678');
    const gone = new AbortController();
    const left = followCriLog(path, { running: async () => true, signal: gone.signal, write: () => undefined, pollMs: 5000 });
    gone.abort();
    await left;
  });
});
