import assert from 'node:assert/strict';
import { appendFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { Writable } from 'node:stream';
import { describe, test } from 'node:test';

import { followCriLog } from '../../pkg/sandbox/cri_log_follow.js';
import { tempFolders } from '../lib/unit.js';

// Attach's output comes from following the container's CRI log: a client
// that does not read must leave the rest on disk, not in the runtime.

const folders = tempFolders('cri-log-follow-');

describe('following a CRI log for attach', () => {
  test("waits for the client's writable to drain; what it has not taken stays on disk; every line arrives once it reads", async () => {
    const dir = await folders.fresh('log');
    const path = join(dir, '0.log');
    await writeFile(path, '');
    const held: Array<() => void> = [];
    let lines = 0;
    let written = 0;
    let reading = false;
    const slow = new Writable({
      highWaterMark: 1,
      write(chunk: Buffer, _e, done) {
        written++;
        lines += chunk.toString().split('\n').length - 1;
        if (reading) done();
        else held.push(() => done());
      },
    });
    const follower = await followCriLog(path, { stdout: slow });
    try {
      const line = `2026-12-08T00:00:00.000000000Z stdout F ${'x'.repeat(1000)}\n`;
      const n = 5000;
      await appendFile(path, line.repeat(n));
      for (let i = 0; i < 1000 && written === 0; i++) await new Promise((r) => setTimeout(r, 10));
      // Two more rounds of the follower's 500 ms timer: it must still be waiting.
      await new Promise((r) => setTimeout(r, 1100));
      assert.equal(written, 1, `${written} writes went to a client that took none`);
      // Now the client reads.
      reading = true;
      held.splice(0).forEach((f) => f());
      for (let i = 0; i < 3000 && lines < n; i++) await new Promise((r) => setTimeout(r, 10));
      assert.equal(lines, n);
    } finally {
      follower.stop();
    }
  });
});
