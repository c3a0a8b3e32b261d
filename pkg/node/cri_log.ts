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
