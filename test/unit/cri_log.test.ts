import assert from 'node:assert/strict';
import { describe, test } from 'node:test';

import { parseCriLog, renderLogs, rfc3339Ns } from '../../pkg/node/cri_log.js';

const log = [
  '2026-12-01T10:00:00.000000001Z stdout F first',
  '2026-12-01T10:00:01.5Z stderr F oops',
  '2026-12-01T10:00:02.000000000Z stdout P par',
  '2026-12-01T10:00:02.100000000Z stdout F tial',
  'garbage line cut mid-write',
  '2026-12-01T10:00:03+01:00 stdout F earlier by the zone',
  '2026-12-01T10:00:04Z stdout P no newline yet',
].join('\n');

describe('CRI container logs as kubelet serves them', () => {
  test('times to the nanosecond, zones honoured', () => {
    assert.equal(rfc3339Ns('1970-01-01T00:00:01.000000002Z'), 1000000002n);
    assert.equal(rfc3339Ns('1970-01-01T01:00:00+01:00'), 0n);
    assert.equal(rfc3339Ns('yesterday'), undefined);
  });
  test('partial chunks join their line; malformed lines are skipped; a last partial line is shown', () => {
    const lines = parseCriLog(log);
    assert.deepEqual(lines.map((l) => l.text), ['earlier by the zone\n', 'first\n', 'oops\n', 'partial\n', 'no newline yet']);
    assert.equal(renderLogs(lines, { stream: 'stderr' }), 'oops\n');
  });
  test('tailLines, sinceTime, timestamps, limitBytes', () => {
    const lines = parseCriLog(log);
    assert.equal(renderLogs(lines, { tailLines: 2 }), 'partial\nno newline yet');
    assert.equal(renderLogs(lines, { tailLines: 0 }), '');
    assert.equal(renderLogs(lines, { sinceNs: rfc3339Ns('2026-12-01T10:00:01Z')! }), 'oops\npartial\nno newline yet');
    assert.equal(renderLogs(lines, { tailLines: 1, timestamps: true }), '2026-12-01T10:00:04Z no newline yet');
    assert.equal(renderLogs(lines, { limitBytes: 8 }), 'earlier ');
  });
});
