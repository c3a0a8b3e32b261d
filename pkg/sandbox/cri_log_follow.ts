import { watch, type FSWatcher } from 'node:fs';
import { open, stat } from 'node:fs/promises';
import type { Writable } from 'node:stream';
import { StringDecoder } from 'node:string_decoder';

// Follows a container's CRI log from its current end (what Attach shows:
// the output from now on). conmon writes each chunk of the container's
// stdout/stderr as "<RFC3339Nano> <stdout|stderr> <P|F> <text>\n": F ends a
// line, P is a partial one (no newline of its own). conmon's attach socket
// would carry the same bytes, but it is a SOCK_SEQPACKET socket, which Node
// cannot open; the log is the same stream, already on disk.

export interface LogFollower {
  stop(): void;
}

/** Read at most this much of the log at a time: a container that writes faster than its attach client reads waits on disk, not here. */
const readChunk = 1024 * 1024;

/** Writes `text`; resolves when `w` takes more (its 'drain'), or is gone. */
function writeOut(w: Writable, text: string): Promise<void> {
  if (w.destroyed || w.write(text)) return Promise.resolve();
  return new Promise((resolve) => {
    const done = (): void => {
      w.off('drain', done);
      w.off('close', done);
      w.off('error', done);
      resolve();
    };
    w.on('drain', done);
    w.on('close', done);
    w.on('error', done);
  });
}

export async function followCriLog(path: string, out: { stdout?: Writable; stderr?: Writable }): Promise<LogFollower> {
  let offset = (await stat(path).catch(() => ({ size: 0 }))).size;
  let pending = '';
  // A read may end inside a UTF-8 character: the decoder keeps its first bytes for the next.
  const decoder = new StringDecoder('utf8');
  let busy = false;
  let again = false;
  let stopped = false;
  const readMore = async (): Promise<void> => {
    if (busy) {
      again = true;
      return;
    }
    busy = true;
    try {
      do {
        again = false;
        const size = (await stat(path).catch(() => ({ size: offset }))).size;
        // Rotated away and reopened (ReopenContainerLog): start at the new file's top.
        if (size < offset) offset = 0;
        if (size === offset) continue;
        const fh = await open(path, 'r');
        try {
          const buf = Buffer.alloc(Math.min(size - offset, readChunk));
          const { bytesRead } = await fh.read(buf, 0, buf.length, offset);
          offset += bytesRead;
          pending += decoder.write(buf.subarray(0, bytesRead));
          if (offset < size) again = true;
        } finally {
          await fh.close();
        }
        let nl: number;
        while (!stopped && (nl = pending.indexOf('\n')) >= 0) {
          const line = pending.slice(0, nl);
          pending = pending.slice(nl + 1);
          const m = /^\S+ (stdout|stderr) ([PF]) (.*)$/s.exec(line);
          if (!m) continue;
          const target = m[1] === 'stderr' ? (out.stderr ?? out.stdout) : out.stdout;
          if (target) await writeOut(target, m[2] === 'F' ? `${m[3]}\n` : m[3]!);
        }
      } while (again && !stopped);
    } finally {
      busy = false;
    }
  };
  let watcher: FSWatcher | undefined;
  try {
    watcher = watch(path, () => void readMore());
  } catch {
    watcher = undefined;
  }
  // inotify misses nothing on a local disk; the timer covers a log that was replaced.
  const timer = setInterval(() => void readMore(), 500);
  return {
    stop(): void {
      stopped = true;
      watcher?.close();
      clearInterval(timer);
    },
  };
}
