import { type FSWatcher, watch } from 'node:fs';
import { type FileHandle, open, stat } from 'node:fs/promises';
import { basename, dirname } from 'node:path';
import { StringDecoder } from 'node:string_decoder';

// Reading a container's CRI log the way kubelet serves /containerLogs (what
// `kubectl logs` shows): conmon writes "<RFC3339Nano> <stdout|stderr> <P|F>
// <text>" lines, F ending a line of the container's output and P a part of
// one. The options are kubelet's: tailLines, sinceTime/sinceSeconds,
// timestamps, limitBytes, and which streams.
//
// Readers never load a whole file: --tail finds where its lines start by
// reading backwards from the end in blocks (kubelet's
// tail.FindTailLineStartIndex), and everything is then read forwards in
// blocks at the client's pace, so a request costs what it returns. As in
// kubelet's ReadLogs, only the current file is read: rotated files
// (`<log>.<timestamp>`, `.gz`) are for log shippers, not for `kubectl logs`.

export interface CriLogLine {
  /** Nanoseconds since the epoch. */
  timeNs: bigint;
  time: string;
  stream: 'stdout' | 'stderr';
  /** The container's bytes, with the newline for a full line. */
  text: string;
}

export interface LogOptions {
  tailLines?: number;
  /** Only lines at or after this time (ns since the epoch). */
  sinceNs?: bigint;
  timestamps?: boolean;
  limitBytes?: number;
  stream?: 'stdout' | 'stderr' | 'all';
}

/** RFC 3339 with up to nanoseconds, as conmon writes it, in ns since the epoch. */
export function rfc3339Ns(t: string): bigint | undefined {
  const m = /^(\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2})(?:\.(\d{1,9}))?(Z|[+-]\d{2}:\d{2})$/.exec(t);
  if (!m) return undefined;
  const ms = Date.parse(`${m[1]}${m[3]}`);
  if (Number.isNaN(ms)) return undefined;
  return BigInt(ms) * 1000000n + BigInt((m[2] ?? '').padEnd(9, '0'));
}

/**
 * The container's output lines from the log text: partial (P) chunks are
 * joined to the full line they belong to, per stream; a malformed line is
 * skipped (a log cut mid-write ends with one).
 */
export function parseCriLog(text: string): CriLogLine[] {
  const out: CriLogLine[] = [];
  const open: Partial<Record<'stdout' | 'stderr', CriLogLine>> = {};
  for (const raw of text.split('\n')) {
    const m = /^(\S+) (stdout|stderr) ([PF]) (.*)$/s.exec(raw);
    if (!m) continue;
    const timeNs = rfc3339Ns(m[1]!);
    if (timeNs === undefined) continue;
    const stream = m[2] as 'stdout' | 'stderr';
    const pending = open[stream];
    const line = pending ?? { timeNs, time: m[1]!, stream, text: '' };
    line.text += m[4]!;
    if (m[3] === 'F') {
      line.text += '\n';
      out.push(line);
      delete open[stream];
    } else {
      open[stream] = line;
    }
  }
  // A partial line at the end is what the container has written so far.
  for (const l of Object.values(open)) if (l) out.push(l);
  return out.sort((a, b) => (a.timeNs < b.timeNs ? -1 : a.timeNs > b.timeNs ? 1 : 0));
}

/** What /containerLogs answers for these options. */
export function renderLogs(lines: readonly CriLogLine[], o: LogOptions): string {
  let sel = lines.filter((l) => (o.stream ?? 'all') === 'all' || l.stream === o.stream).filter((l) => o.sinceNs === undefined || l.timeNs >= o.sinceNs);
  if (o.tailLines !== undefined && o.tailLines >= 0) sel = o.tailLines === 0 ? [] : sel.slice(-o.tailLines);
  let text = sel.map((l) => (o.timestamps ? `${l.time} ${l.text}` : l.text)).join('');
  if (o.limitBytes !== undefined && o.limitBytes >= 0) text = Buffer.from(text).subarray(0, o.limitBytes).toString();
  return text;
}

/**
 * The container's lines from a log read piece by piece (a followed file):
 * only whole lines come out, a raw line cut mid-write and P chunks wait for
 * the rest; `flush` gives what is left when the container is gone.
 */
export class CriLogParser {
  private raw = '';
  private readonly open: Partial<Record<'stdout' | 'stderr', CriLogLine>> = {};

  push(text: string): CriLogLine[] {
    this.raw += text;
    const cut = this.raw.lastIndexOf('\n');
    if (cut < 0) return [];
    const whole = this.raw.slice(0, cut);
    this.raw = this.raw.slice(cut + 1);
    const out: CriLogLine[] = [];
    for (const raw of whole.split('\n')) {
      const m = /^(\S+) (stdout|stderr) ([PF]) (.*)$/s.exec(raw);
      if (!m) continue;
      const timeNs = rfc3339Ns(m[1]!);
      if (timeNs === undefined) continue;
      const stream = m[2] as 'stdout' | 'stderr';
      const line = this.open[stream] ?? { timeNs, time: m[1]!, stream, text: '' };
      line.text += m[4]!;
      if (m[3] === 'F') {
        line.text += '\n';
        out.push(line);
        delete this.open[stream];
      } else {
        this.open[stream] = line;
      }
    }
    return out;
  }

  /** The partial lines still open (the container wrote no newline before it ended). */
  flush(): CriLogLine[] {
    const out = [...this.push('\n')];
    for (const s of ['stdout', 'stderr'] as const) {
      const l = this.open[s];
      if (l) out.push(l);
      delete this.open[s];
    }
    return out;
  }
}

/** Bytes read per step, backwards for a tail and forwards for the rest. */
export const logBlockBytes = 64 * 1024;
/** Enough for "<RFC3339Nano with zone> stderr P ": the header of a CRI log line. */
const headerBytes = 64;

/**
 * Where the last `lines` lines of the container's output start in a CRI log
 * of `size` bytes, reading backwards `block` bytes at a time. A line is what
 * the parser makes of the file: P chunks and the F chunk that ends them, or
 * a partial line at the end; malformed raw lines do not count. 0 when the
 * file holds fewer lines, `size` for none.
 */
export async function findTailStart(fh: FileHandle, size: number, lines: number, block = logBlockBytes): Promise<number> {
  if (lines <= 0) return size;
  const buf = Buffer.alloc(Math.min(block, Math.max(size, 1)));
  let blockStart = size;
  let blockLen = 0;
  /** The tag of the raw line [start, end): F ends a line of output, P is part of one. */
  const tagOf = async (start: number, end: number): Promise<'F' | 'P' | undefined> => {
    const len = Math.min(end - start, headerBytes);
    let head: Buffer;
    if (start >= blockStart && start + len <= blockStart + blockLen) head = buf.subarray(start - blockStart, start - blockStart + len);
    else {
      head = Buffer.alloc(len);
      head = head.subarray(0, (await fh.read(head, 0, len, start)).bytesRead);
    }
    const m = /^(\S+) (?:stdout|stderr) ([PF])(?: |$)/.exec(head.toString('latin1'));
    return m && rfc3339Ns(m[1]!) !== undefined ? (m[2] as 'F' | 'P') : undefined;
  };
  // F lines still to pass going backwards: the last `lines` lines start just after the F
  // that ends the line before them; a partial line at the end is one of them.
  let need: number | undefined;
  // The end of the raw line being scanned: its newline, or the end of a file cut mid-write.
  let lineEnd = size;
  /** Counts the raw line [start, end): true when it is the F before the tail. */
  const passes = async (start: number, end: number): Promise<boolean> => {
    const tag = await tagOf(start, end);
    if (tag === undefined) return false;
    need ??= tag === 'F' ? lines + 1 : lines;
    return tag === 'F' && --need === 0;
  };
  while (blockStart > 0) {
    const len = Math.min(buf.length, blockStart);
    blockStart -= len;
    blockLen = (await fh.read(buf, 0, len, blockStart)).bytesRead;
    for (let i = blockLen - 1; i >= 0; i--) {
      if (buf[i] !== 0x0a) continue;
      const nl = blockStart + i;
      if (nl === size - 1) {
        lineEnd = nl;
        continue;
      }
      if (await passes(nl + 1, lineEnd)) return lineEnd + 1;
      lineEnd = nl;
    }
  }
  // The first line of the file.
  return lineEnd > 0 && (await passes(0, lineEnd)) ? lineEnd + 1 : 0;
}

/** kubelet's options applied to lines as they come: stream and since, timestamps, and limitBytes. */
class LogOutput {
  private sent = 0;
  constructor(
    private readonly o: LogOptions,
    private readonly write: (text: string) => void | Promise<void>,
  ) {}

  keep(l: CriLogLine): boolean {
    return ((this.o.stream ?? 'all') === 'all' || l.stream === this.o.stream) && (this.o.sinceNs === undefined || l.timeNs >= this.o.sinceNs);
  }

  /** Writes the lines it keeps; false once limitBytes is reached (nothing more is wanted). */
  async emit(lines: readonly CriLogLine[]): Promise<boolean> {
    const text = lines
      .filter((l) => this.keep(l))
      .map((l) => (this.o.timestamps ? `${l.time} ${l.text}` : l.text))
      .join('');
    if (this.o.limitBytes !== undefined && this.o.limitBytes >= 0) {
      const room = this.o.limitBytes - this.sent;
      const b = Buffer.from(text);
      if (b.length >= room) {
        if (room > 0) await this.write(b.subarray(0, room).toString());
        this.sent = this.o.limitBytes;
        return false;
      }
    }
    if (text !== '') {
      this.sent += Buffer.byteLength(text);
      await this.write(text);
    }
    return true;
  }
}

/**
 * One open log file read forwards in blocks: the parser and the decoder
 * carry a line or a character cut by a block (or by a rotation) over.
 */
class LogCursor {
  readonly parser = new CriLogParser();
  private readonly decoder = new StringDecoder('utf8');
  private readonly buf: Buffer;
  fh: FileHandle | undefined;
  ino = -1;
  offset = 0;

  constructor(block: number) {
    this.buf = Buffer.alloc(block);
  }

  /** Opens the file at `path` (false when there is none yet). */
  async open(path: string): Promise<boolean> {
    try {
      this.fh = await open(path, 'r');
    } catch (e: unknown) {
      if ((e as NodeJS.ErrnoException).code === 'ENOENT') return false;
      throw e;
    }
    this.ino = (await this.fh.stat()).ino;
    this.offset = 0;
    return true;
  }

  async size(): Promise<number> {
    return this.fh ? (await this.fh.stat()).size : 0;
  }

  /** Reads up to `end` (default: the file's end now), giving the lines to `sink`; false once it wants no more. */
  async pump(sink: (lines: CriLogLine[]) => Promise<boolean>, end?: number, signal?: AbortSignal): Promise<boolean> {
    if (!this.fh) return true;
    const stop = end ?? (await this.size());
    while (this.offset < stop) {
      if (signal?.aborted) return false;
      const { bytesRead } = await this.fh.read(this.buf, 0, Math.min(this.buf.length, stop - this.offset), this.offset);
      if (bytesRead === 0) break;
      this.offset += bytesRead;
      if (!(await sink(this.parser.push(this.decoder.write(this.buf.subarray(0, bytesRead)))))) return false;
    }
    return true;
  }

  /** What is left at the end: a raw line cut mid-write, partial lines. */
  rest(): CriLogLine[] {
    return this.parser.push(this.decoder.end()).concat(this.parser.flush());
  }

  async close(): Promise<void> {
    await this.fh?.close().catch(() => undefined);
    this.fh = undefined;
  }
}

/**
 * What /containerLogs answers without follow, written piece by piece at the
 * caller's pace: the file is read from where the tail starts (or its top)
 * to its end when it was opened. A missing file is an empty log.
 */
export async function readCriLog(path: string, o: LogOptions, write: (text: string) => void | Promise<void>, x: { signal?: AbortSignal; blockBytes?: number } = {}): Promise<void> {
  const block = x.blockBytes ?? logBlockBytes;
  const cursor = new LogCursor(block);
  if (!(await cursor.open(path))) return;
  try {
    const out = new LogOutput(o, write);
    const size = await cursor.size();
    if (o.tailLines !== undefined) cursor.offset = await findTailStart(cursor.fh!, size, o.tailLines, block);
    if (await cursor.pump((l) => out.emit(l), size, x.signal)) await out.emit(cursor.rest());
  } finally {
    await cursor.close();
  }
}

/** The last `lines` lines of the container's output (a termination message from its log). */
export async function tailCriLog(path: string, lines: number): Promise<CriLogLine[]> {
  const cursor = new LogCursor(logBlockBytes);
  if (!(await cursor.open(path))) return [];
  try {
    const size = await cursor.size();
    cursor.offset = await findTailStart(cursor.fh!, size, lines);
    const got: CriLogLine[] = [];
    await cursor.pump(async (l) => {
      got.push(...l);
      return true;
    }, size);
    got.push(...cursor.rest());
    return got.slice(-lines);
  } finally {
    await cursor.close();
  }
}

export interface FollowOptions extends LogOptions {
  /** Whether the container still runs: following ends once it does not and the log is read to its end. */
  running: () => Promise<boolean>;
  /** Ends following (the client went away). */
  signal: AbortSignal;
  /** Written in order; a promise holds the next write back (the client's pace). */
  write: (text: string) => void | Promise<void>;
  pollMs?: number;
  /** Bytes per read (tests make it small). */
  blockBytes?: number;
}

/**
 * `kubectl logs -f`: what readCriLog would show now (tailLines, since), then
 * every line the container writes, until it exits, the client leaves, or
 * limitBytes is reached — read in blocks as it comes, never the whole file
 * again. Rotation, as kubelet's ReadLogs follows it: when another file
 * appears at the path (renamed away, ReopenContainerLog), the old one is
 * read to its end and reading goes on at the new one's top; a file that
 * shrinks in place (truncated) is read again from its top.
 */
export async function followCriLog(path: string, o: FollowOptions): Promise<void> {
  const block = o.blockBytes ?? logBlockBytes;
  const out = new LogOutput(o, o.write);
  const emit = (l: CriLogLine[]): Promise<boolean> => out.emit(l);
  const cursor = new LogCursor(block);
  let wake: (() => void) | undefined;
  // A change seen while reading: the next wait is skipped.
  let changed = false;
  let watcher: FSWatcher | undefined;
  const onAbort = (): void => wake?.();
  o.signal.addEventListener('abort', onAbort);
  try {
    if (await cursor.open(path)) {
      const size = await cursor.size();
      if (o.tailLines !== undefined) cursor.offset = await findTailStart(cursor.fh!, size, o.tailLines, block);
      if (!(await cursor.pump(emit, size, o.signal))) return;
    }
    // The folder, not the file: a watch on the file would stay with it when it is renamed away.
    try {
      const name = basename(path);
      watcher = watch(dirname(path), (_event, file) => {
        if (file !== null && file !== name) return;
        changed = true;
        wake?.();
      });
      watcher.on('error', () => undefined);
    } catch {
      // No watch: the poll below still reads it.
    }
    for (;;) {
      if (o.signal.aborted) return;
      changed = false;
      if (!(await cursor.pump(emit, undefined, o.signal))) return;
      const now = await stat(path).catch(() => undefined);
      if (now && cursor.fh && now.ino !== cursor.ino) {
        // Rotated: what the container wrote to the old file before it moved over, then the new file.
        if (!(await cursor.pump(emit, undefined, o.signal))) return;
        await cursor.close();
        continue;
      }
      if (!cursor.fh) {
        if (now && (await cursor.open(path))) continue;
      } else if (now && now.size < cursor.offset) {
        cursor.offset = 0;
        continue;
      }
      const alive = await o.running().catch(() => false);
      if (!alive) {
        // What it wrote before it ended, then the end.
        if (await cursor.pump(emit, undefined, o.signal)) await out.emit(cursor.rest());
        return;
      }
      if (changed) continue;
      await new Promise<void>((resolve) => {
        const t = setTimeout(resolve, o.pollMs ?? 1000);
        wake = () => {
          clearTimeout(t);
          resolve();
        };
      });
      wake = undefined;
    }
  } finally {
    o.signal.removeEventListener('abort', onAbort);
    watcher?.close();
    await cursor.close();
  }
}
