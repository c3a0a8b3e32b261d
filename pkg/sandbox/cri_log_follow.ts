import { watch, type FSWatcher } from 'node:fs';
import { type FileHandle, open, stat } from 'node:fs/promises';
import { basename, dirname } from 'node:path';
import { StringDecoder } from 'node:string_decoder';
import type { Writable } from 'node:stream';

// Follows a container's CRI log from its current end (what Attach shows:
// the output from now on). conmon writes each chunk of the container's
// stdout/stderr as "<RFC3339Nano> <stdout|stderr> <P|F> <text>\n": F ends a
// line, P is a partial one (no newline of its own). conmon's attach socket
// would carry the same bytes, but it is a SOCK_SEQPACKET socket, which Node
// cannot open; the log is the same stream, already on disk.
//
// Read in blocks, at the pace of the streams written to; a log rotated away
// (ReopenContainerLog) is read to its end before the new file at the path.
// Nothing here may reject unobserved: a read that fails (the file renamed or
// removed under it) is retried at the next change or tick.

export interface LogFollower {
  stop(): void;
}

const blockBytes = 64 * 1024;

export async function followCriLog(path: string, out: { stdout?: Writable; stderr?: Writable }, o: { onError?: (e: unknown) => void } = {}): Promise<LogFollower> {
  let fh: FileHandle | undefined;
  let ino = -1;
  let offset = 0;
  try {
    fh = await open(path, 'r');
    const st = await fh.stat();
    ino = st.ino;
    offset = st.size;
  } catch {
    // Not there yet: followed from its top once it is.
  }
  const decoder = new StringDecoder('utf8');
  const buf = Buffer.alloc(blockBytes);
  let pending = '';
  let busy = false;
  let again = false;
  let stopped = false;

  /** Resolves when the stream takes more (or is gone). */
  const paced = (w: Writable, text: string): Promise<void> | undefined => {
    if (w.destroyed || w.write(text)) return undefined;
    return new Promise<void>((resolve) => {
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
  };
  const deliver = async (): Promise<void> => {
    let nl: number;
    while ((nl = pending.indexOf('\n')) >= 0) {
      const line = pending.slice(0, nl);
      pending = pending.slice(nl + 1);
      const m = /^\S+ (stdout|stderr) ([PF]) (.*)$/s.exec(line);
      if (!m) continue;
      const target = m[1] === 'stderr' ? (out.stderr ?? out.stdout) : out.stdout;
      if (target) await paced(target, m[2] === 'F' ? `${m[3]}\n` : m[3]!);
    }
  };
  /** Reads what `fh` has past `offset`, block by block. */
  const drain = async (): Promise<void> => {
    if (!fh) return;
    for (;;) {
      if (stopped) return;
      const { bytesRead } = await fh.read(buf, 0, buf.length, offset);
      if (bytesRead === 0) return;
      offset += bytesRead;
      pending += decoder.write(buf.subarray(0, bytesRead));
      await deliver();
    }
  };
  const readMore = async (): Promise<void> => {
    if (busy) {
      again = true;
      return;
    }
    busy = true;
    try {
      do {
        again = false;
        // A file that cannot be read may have been replaced: the path is looked at before the failure is reported.
        const failed = await drain().then(
          () => undefined,
          (e: unknown) => e ?? new Error('read failed'),
        );
        const now = await stat(path).catch(() => undefined);
        if (!now || stopped || (fh && now.ino === ino)) {
          if (failed !== undefined) throw failed;
          // Truncated in place: its top again.
          if (now && now.size < offset) offset = 0;
          continue;
        }
        // Rotated away and reopened (ReopenContainerLog): the rest of the old file, then the new one from its top.
        await drain().catch(() => undefined);
        await fh?.close().catch(() => undefined);
        fh = undefined;
        const next = await open(path, 'r');
        fh = next;
        ino = (await next.stat()).ino;
        offset = 0;
        again = true;
      } while (again && !stopped);
    } finally {
      busy = false;
      if (stopped) {
        await fh?.close().catch(() => undefined);
        fh = undefined;
      }
    }
  };
  const tick = (): void => {
    readMore().catch((e: unknown) => {
      // The file moved between the stat and the open, or a read failed: the next change or tick tries again.
      o.onError?.(e);
    });
  };
  let watcher: FSWatcher | undefined;
  try {
    // The folder: a watch on the file would stay with it when it is renamed away.
    const name = basename(path);
    watcher = watch(dirname(path), (_event, file) => {
      if (file === null || file === name) tick();
    });
    watcher.on('error', () => undefined);
  } catch {
    watcher = undefined;
  }
  // inotify misses nothing on a local disk; the timer covers a folder that could not be watched.
  const timer = setInterval(tick, 500);
  return {
    stop(): void {
      stopped = true;
      watcher?.close();
      clearInterval(timer);
      if (!busy) {
        void fh?.close().catch(() => undefined);
        fh = undefined;
      }
    },
  };
}
