
import { expectedStreams, parseResize, ResizeChannel, statusMessage, type Outcome, type RemoteCommandSession, type RemoteCommandVersion, type StreamOptions } from './remotecommand.js';
import type { SpdySession, SpdyStream } from './spdy.js';

// The remote command protocol over SPDY: the client opens one stream per
// stdio channel ("streamtype" error, stdin, stdout, stderr, resize); the
// session starts once all it should open are there (30 s at most, as kubelet),
// and ends with the status on the error stream and every stream finished.

const streamCreationTimeoutMs = 30000;

export async function spdySession(spdy: SpdySession, version: RemoteCommandVersion, o: StreamOptions): Promise<RemoteCommandSession> {
  const wanted = new Set(expectedStreams(version, o));
  const streams = new Map<string, SpdyStream>();
  await new Promise<void>((resolve, reject) => {
    const timer = setTimeout(() => {
      cleanup();
      reject(new Error(`the client opened ${[...streams.keys()].join(', ') || 'no streams'} of ${[...wanted].join(', ')} within ${streamCreationTimeoutMs / 1000} s`));
    }, streamCreationTimeoutMs);
    const onStream = (s: SpdyStream): void => {
      const type = s.headers['streamtype'] ?? '';
      if (!wanted.has(type) || streams.has(type)) {
        s.reset();
        return;
      }
      streams.set(type, s);
      if (streams.size === wanted.size) {
        cleanup();
        resolve();
      }
    };
    const onClose = (): void => {
      cleanup();
      reject(new Error('the client closed the connection before opening its streams'));
    };
    const cleanup = (): void => {
      clearTimeout(timer);
      spdy.off('stream', onStream);
      spdy.off('close', onClose);
    };
    spdy.on('stream', onStream);
    spdy.on('close', onClose);
  });
  const resize = new ResizeChannel();
  const resizeStream = streams.get('resize');
  if (resizeStream) {
    // One JSON object a line (Go's json.Encoder).
    let pending = '';
    resizeStream.on('data', (d: Buffer) => {
      pending += d.toString();
      let nl: number;
      while ((nl = pending.indexOf('\n')) >= 0) {
        const size = parseResize(Buffer.from(pending.slice(0, nl)));
        pending = pending.slice(nl + 1);
        if (size) resize.push(size);
      }
    });
  }
  // Output-only streams: nothing comes from the client on them but FIN.
  for (const t of ['stdout', 'stderr', 'error']) streams.get(t)?.resume();
  const gone = new Promise<void>((resolve) => spdy.once('close', () => resolve()));
  const stdin = streams.get('stdin');
  const stdout = streams.get('stdout');
  const stderr = streams.get('stderr');
  return {
    version,
    ...(stdin ? { stdin } : {}),
    ...(stdout ? { stdout } : {}),
    ...(stderr ? { stderr } : {}),
    resize,
    gone,
    async finish(outcome: Outcome): Promise<void> {
      const error = streams.get('error');
      const status = statusMessage(version, outcome);
      if (error && status) await new Promise<void>((r) => error.write(status, () => r()));
      const ends = [stdout, stderr, error].filter((s): s is SpdyStream => s !== undefined && !s.writableEnded).map((s) => new Promise<void>((r) => s.end(() => r())));
      await Promise.all(ends);
      spdy.close();
    },
  };
}
