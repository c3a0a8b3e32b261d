import { PassThrough, Writable } from 'node:stream';

import type { WebSocket } from 'ws';

import { parseResize, ResizeChannel, statusMessage, type Outcome, type RemoteCommandSession, type RemoteCommandVersion, type StreamOptions } from './remotecommand.js';

// The remote command protocol over a WebSocket (Kubernetes' channel
// protocols): every binary message starts with its channel — 0 stdin,
// 1 stdout, 2 stderr, 3 error, 4 resize; from v5, a message on channel 255
// carrying a channel number closes that channel (the client ending stdin).
// The session ends with the status on channel 3 and a normal close (1000).
//
// Flow control: what the client sends on stdin goes into a small buffer the
// command's stdin pipe drains; when it is full the WebSocket is paused (its
// socket is no longer read, so TCP's window stops the client) until the
// buffer drains. Output waits for each message to be written to the socket
// before the next is taken from the command.

const STDIN = 0;
const STDOUT = 1;
const STDERR = 2;
const ERROR = 3;
const RESIZE = 4;
const CLOSE = 255;

/** What stdin may hold that the command has not taken, before the client is paused. */
export const stdinBuffer = 64 * 1024;
/** While paused, a ping this often finds out if the client is still there (its close waits behind the unread bytes). */
const probeMs = 5000;
/** Paused this long with nothing taken, the session is ended (kubelet's streamingConnectionIdleTimeout; see spdy.ts for why). */
const idleTimeoutMs = 4 * 60 * 60 * 1000;

/** A Writable that sends what is written as messages on `channel`; ws' own buffer applies the backpressure. */
export function channelWriter(ws: WebSocket, channel: number): Writable {
  return new Writable({
    write(chunk: Buffer, _enc, done) {
      if (ws.readyState !== ws.OPEN) return done();
      ws.send(Buffer.concat([Buffer.from([channel]), chunk]), { binary: true }, (err) => done(err ?? null));
    },
  });
}

export function websocketSession(ws: WebSocket, version: RemoteCommandVersion, o: StreamOptions): RemoteCommandSession {
  const stdin = o.stdin ? new PassThrough({ highWaterMark: stdinBuffer }) : undefined;
  const resize = new ResizeChannel();
  const gone = new Promise<void>((resolve) => {
    ws.once('close', () => resolve());
    ws.once('error', () => resolve());
  });
  let probe: NodeJS.Timeout | undefined;
  const pause = (): void => {
    if (ws.isPaused) return;
    ws.pause();
    const since = Date.now();
    probe = setInterval(() => {
      if (Date.now() - since > idleTimeoutMs) ws.terminate();
      else if (ws.readyState === ws.OPEN) ws.ping();
    }, probeMs);
    probe.unref();
  };
  const resume = (): void => {
    if (probe) clearInterval(probe);
    probe = undefined;
    if (ws.isPaused && ws.readyState === ws.OPEN) ws.resume();
  };
  stdin?.on('drain', resume);
  ws.on('message', (data: Buffer, isBinary: boolean) => {
    if (!isBinary || data.length === 0) return;
    const channel = data[0];
    const body = data.subarray(1);
    // stdin written after the client closed it (v5's 255 0, or the close) would be an 'error' with no listener: the end of the process.
    if (channel === STDIN) {
      if (stdin && !stdin.writableEnded && !stdin.write(body)) pause();
    } else if (channel === RESIZE) {
      const size = parseResize(body);
      if (size) resize.push(size);
    } else if (channel === CLOSE && version === 'v5.channel.k8s.io' && body[0] === STDIN) stdin?.end();
  });
  void gone.then(() => {
    if (probe) clearInterval(probe);
    stdin?.end();
  });
  return {
    version,
    ...(stdin ? { stdin } : {}),
    ...(o.stdout ? { stdout: channelWriter(ws, STDOUT) } : {}),
    ...(o.stderr && !o.tty ? { stderr: channelWriter(ws, STDERR) } : {}),
    resize,
    gone,
    async finish(outcome: Outcome): Promise<void> {
      if (ws.readyState !== ws.OPEN) return;
      const status = statusMessage(version, outcome);
      if (status) await new Promise<void>((r) => ws.send(Buffer.concat([Buffer.from([ERROR]), status]), { binary: true }, () => r()));
      ws.close(1000);
    },
  };
}
