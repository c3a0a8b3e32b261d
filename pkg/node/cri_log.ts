import { type FSWatcher, watch } from 'node:fs';
import { open, stat } from 'node:fs/promises';

// Reading a container's CRI log the way kubelet serves /containerLogs (what
// `kubectl logs` shows): conmon writes "<RFC3339Nano> <stdout|stderr> <P|F>
// <text>" lines, F ending a line of the container's output and P a part of
// one. The options are kubelet's: tailLines, sinceTime/sinceSeconds,
// timestamps, limitBytes, and which streams.

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

export interface FollowOptions extends LogOptions {
  /** Whether the container still runs: following ends once it does not and the log is read to its end. */
  running: () => Promise<boolean>;
  /** Ends following (the client went away). */
  signal: AbortSignal;
  /** Written in order; a promise holds the next write back (the client's pace). */
  write: (text: string) => void | Promise<void>;
  pollMs?: number;
}

/**
 * `kubectl logs -f`: what renderLogs would show now (tailLines, since), then
 * every line the container writes, until it exits, the client leaves, or
 * limitBytes is reached. A file that shrinks was rotated and reopened
 * (ReopenContainerLog): reading starts again at its top.
 */
export async function followCriLog(path: string, o: FollowOptions): Promise<void> {
  const parser = new CriLogParser();
  let offset = 0;
  let sent = 0;
  const keep = (l: CriLogLine): boolean => ((o.stream ?? 'all') === 'all' || l.stream === o.stream) && (o.sinceNs === undefined || l.timeNs >= o.sinceNs);
  /** Writes the lines; false once limitBytes is reached. */
  const emit = async (lines: CriLogLine[]): Promise<boolean> => {
    const text = lines.map((l) => (o.timestamps ? `${l.time} ${l.text}` : l.text)).join('');
    if (o.limitBytes !== undefined && o.limitBytes >= 0) {
      const room = o.limitBytes - sent;
      const b = Buffer.from(text);
      if (b.length >= room) {
        if (room > 0) await o.write(b.subarray(0, room).toString());
        sent = o.limitBytes;
        return false;
      }
    }
    if (text !== '') {
      sent += Buffer.byteLength(text);
      await o.write(text);
    }
    return true;
  };
  const readNew = async (): Promise<CriLogLine[]> => {
    const size = (await stat(path).catch(() => ({ size: offset }))).size;
    if (size < offset) offset = 0;
    if (size === offset) return [];
    const fh = await open(path, 'r');
    try {
      const buf = Buffer.alloc(size - offset);
      const { bytesRead } = await fh.read(buf, 0, buf.length, offset);
      offset += bytesRead;
      return parser.push(buf.subarray(0, bytesRead).toString('utf8')).filter(keep);
    } finally {
      await fh.close();
    }
  };
  let first = await readNew();
  if (o.tailLines !== undefined && o.tailLines >= 0) first = o.tailLines === 0 ? [] : first.slice(-o.tailLines);
  if (!(await emit(first))) return;
  let wake: (() => void) | undefined;
  let watcher: FSWatcher | undefined;
  try {
    watcher = watch(path, () => wake?.());
    watcher.on('error', () => undefined);
  } catch {
    // No watch (the file is not there yet): the poll below still reads it.
  }
  const onAbort = (): void => wake?.();
  o.signal.addEventListener('abort', onAbort);
  try {
    for (;;) {
      if (o.signal.aborted) return;
      if (!(await emit(await readNew()))) return;
      const alive = await o.running().catch(() => false);
      if (!alive) {
        // What it wrote before it ended, then the end.
        await emit([...(await readNew()), ...parser.flush().filter(keep)]);
        return;
      }
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
  }
}
