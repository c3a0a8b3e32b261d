// conmon's sync pipe (fd 3, `_OCI_SYNCPIPE`): with --api-version 1 it writes
// one line per report, `{"data": N}` or `{"data": N, "message": "…"}` and a
// newline (src/parent_pipe_fd.c). N > 0 is the container's pid, N < 0 a
// failure whose message is runc's stderr. Older conmon (Debian's 2.1.6
// among them) put that message in unescaped: quotes, braces and newlines of
// the command line or of runc's error arrive raw, so a report may be invalid
// JSON and span lines. The reader takes its bytes in any slices, never
// throws, and caps what it keeps: whatever arrives, the caller gets a report
// or the raw text to show.

export interface SyncReport {
  /** The container's pid (> 0), or a failure (≤ 0). */
  data: number;
  /** Why it failed (runc's stderr), when conmon said. */
  message?: string;
}

/** More than this, unreported, is not a report: it is kept only to be shown. */
const maxPending = 64 * 1024;

/** One report from the text of a line (or lines); undefined when it is none. */
export function parseSyncReport(text: string): SyncReport | undefined {
  const t = text.trim();
  if (!t.startsWith('{')) return undefined;
  try {
    const v: unknown = JSON.parse(t);
    if (typeof v === 'object' && v !== null && !Array.isArray(v)) {
      const o = v as Record<string, unknown>;
      const data = o.data ?? o.pid ?? o.exit_code;
      if (typeof data === 'number' && Number.isInteger(data)) return typeof o.message === 'string' ? { data, message: o.message } : { data };
    }
    return undefined;
  } catch {
    // Not JSON: an older conmon's unescaped message. Its shape is fixed (`"}` ends it, nothing between), so the number and the text between the quotes are still there.
  }
  const m = /^\{\s*"(?:data|pid|exit_code)"\s*:\s*(-?\d{1,10})\s*(?:,\s*"message"\s*:\s*"([\s\S]*)")?\}$/.exec(t);
  if (!m) return undefined;
  const data = Number(m[1]);
  return m[2] === undefined ? { data } : { data, message: m[2] };
}

export class SyncPipeReader {
  /** Text after the last newline. */
  private partial = '';
  /** Complete lines of a report not yet readable (an unescaped message with newlines). */
  private pending = '';

  /** Feeds a slice of the pipe; returns the first complete report it makes, if any. */
  push(chunk: string): SyncReport | undefined {
    this.partial += chunk;
    for (;;) {
      const nl = this.partial.indexOf('\n');
      if (nl < 0) break;
      const line = this.partial.slice(0, nl);
      this.partial = this.partial.slice(nl + 1);
      // Lines before a report begins are noise; from a '{' on, lines add up until they read as one.
      if (this.pending === '' && !line.trimStart().startsWith('{')) continue;
      this.pending = this.pending === '' ? line : `${this.pending}\n${line}`;
      const r = parseSyncReport(this.pending);
      if (r) {
        this.pending = '';
        return r;
      }
      if (this.pending.length > maxPending) this.pending = this.pending.slice(-maxPending);
    }
    if (this.partial.length > maxPending) this.partial = this.partial.slice(-maxPending);
    return undefined;
  }

  /** The pipe ended: a report without its final newline, if the rest makes one. */
  end(): SyncReport | undefined {
    const rest = [this.pending, this.partial].filter((s) => s !== '').join('\n');
    const start = rest.indexOf('{');
    return start < 0 ? undefined : parseSyncReport(rest.slice(start));
  }

  /** What arrived that was not a report (for the error message). */
  leftover(): string {
    return [this.pending, this.partial].filter((s) => s !== '').join('\n').slice(-2000);
  }
}
