import assert from 'node:assert/strict';
import { describe, test } from 'node:test';

import { parseSyncReport, SyncPipeReader } from '../../pkg/sandbox/conmon_sync.js';

// conmon's sync pipe as it really arrives: escaped (new conmon) or raw (Debian's
// 2.1.6) messages with braces, quotes and newlines, in slices of any size, or
// garbage. The reader answers with a report or nothing, and never throws.

const feed = (chunks: string[]): { report: ReturnType<SyncPipeReader['push']>; reader: SyncPipeReader } => {
  const reader = new SyncPipeReader();
  for (const c of chunks) {
    const r = reader.push(c);
    if (r) return { report: r, reader };
  }
  return { report: reader.end(), reader };
};

describe("conmon's sync pipe", () => {
  test('a pid, in one piece or split at every byte', () => {
    const line = '{"data": 4242}\n';
    assert.deepEqual(feed([line]).report, { data: 4242 });
    assert.deepEqual(feed([...line]).report, { data: 4242 });
  });

  test('an escaped message with a brace, quotes and a newline in it (the "/no}such" command)', () => {
    const message = 'exec: "/no}such": stat /no}such: no such file or directory\nsecond line {';
    const line = `{"data": -1, "message": ${JSON.stringify(message)}}\n`;
    assert.deepEqual(feed([line]).report, { data: -1, message });
    assert.deepEqual(feed([line.slice(0, 20), line.slice(20)]).report, { data: -1, message });
  });

  test("an older conmon's raw message: unescaped quotes and braces, even over several lines", () => {
    const raw = '{"data": -1, "message": "exec: "/no}such": stat /no}such: no such file or directory"}\n';
    assert.deepEqual(feed([raw]).report, { data: -1, message: 'exec: "/no}such": stat /no}such: no such file or directory' });
    const multi = '{"data": -1, "message": "line one {\nline "two" }\n"}\n';
    assert.deepEqual(feed([...multi]).report, { data: -1, message: 'line one {\nline "two" }\n' });
  });

  test('noise before the report is skipped; a report without its last newline is read at the end', () => {
    assert.deepEqual(feed(['warning: something\n', '{"data": 7}']).report, { data: 7 });
  });

  test('garbage gives no report and never throws', () => {
    for (const g of ['}', '{', '{"data": "x"}\n', '{"data": 1.5}\n', '\u0000\u0001{{{}}}', '[1,2]\n', '{"data": -1, "message": "unterminated\n', 'x'.repeat(200000)]) {
      const { report, reader } = feed([g]);
      assert.equal(report, undefined, JSON.stringify(g.slice(0, 40)));
      assert.ok(reader.leftover().length <= 2000);
    }
  });

  test('parseSyncReport reads the keys conmon has used: data, pid, exit_code', () => {
    assert.deepEqual(parseSyncReport('{"pid": 12}'), { data: 12 });
    assert.deepEqual(parseSyncReport('{"exit_code": 0}'), { data: 0 });
    assert.equal(parseSyncReport('not json'), undefined);
  });
});
