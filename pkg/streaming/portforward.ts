import type { Duplex } from 'node:stream';

import type { LogFields } from '../log/logger.js';
import type { SpdySession, SpdyStream } from './spdy.js';

// Kubernetes' port-forward protocol (portforward.k8s.io) on a SPDY session,
// whether the session came by an HTTP upgrade or tunnelled in a WebSocket
// ("SPDY/3.1+portforward.k8s.io"): for each connection to forward, the client
// opens a data stream and an error stream sharing a "requestid" and naming the
// "port". The pod's port is dialled for the pair; bytes go both ways; a
// failure is a message on the error stream; the error stream is finished last.

export const portForwardProtocol = 'portforward.k8s.io';

/** Opens a connection to `port` on the pod's own loopback (inside its network namespace). */
export type DialPort = (port: number) => Promise<Duplex>;

interface Pair {
  data?: SpdyStream;
  error?: SpdyStream;
}

export function servePortForward(spdy: SpdySession, dial: DialPort, log: (msg: string, fields: LogFields) => void): void {
  const pairs = new Map<string, Pair>();
  spdy.on('stream', (s: SpdyStream) => {
    const type = s.headers['streamtype'];
    const requestId = s.headers['requestid'] ?? String(type === 'data' ? s.id - 2 : s.id);
    if (type !== 'data' && type !== 'error') {
      s.reset();
      return;
    }
    const pair = pairs.get(requestId) ?? {};
    pair[type] = s;
    pairs.set(requestId, pair);
    if (pair.data && pair.error) {
      pairs.delete(requestId);
      void forward(pair.data, pair.error, dial, log);
    }
  });
}

async function forward(data: SpdyStream, error: SpdyStream, dial: DialPort, log: (msg: string, fields: LogFields) => void): Promise<void> {
  // Either stream may break with the connection; unheard, an 'error' would end the process.
  error.on('error', () => undefined);
  error.resume();
  const port = Number.parseInt(data.headers['port'] ?? '', 10);
  const fail = (message: string): void => {
    if (!error.writableEnded) error.end(message);
    if (!data.writableEnded) data.end();
    // Whatever the client still sends has nowhere to go: dropped, so it cannot hold up the connection's other streams.
    data.resume();
  };
  if (!(port > 0 && port <= 65535)) {
    fail(`invalid port "${data.headers['port'] ?? ''}"`);
    return;
  }
  let conn: Duplex;
  try {
    conn = await dial(port);
  } catch (e: unknown) {
    log('port-forward dial failed', { port, error: (e as Error).message });
    fail(`an error occurred forwarding ${port} -> ${port}: ${(e as Error).message}`);
    return;
  }
  let failed = false;
  let podEnded = false;
  conn.once('end', () => (podEnded = true));
  conn.on('error', (e: NodeJS.ErrnoException) => {
    // The pod closing its side first (an HTTP/1.0 server, say) is the end of the
    // connection, not a failure: newer kubectl quits on any error-stream message.
    if (podEnded || e.code === 'ERR_STREAM_PREMATURE_CLOSE' || e.code === 'EPIPE') {
      conn.destroy();
      if (!data.writableEnded) data.end();
      return;
    }
    failed = true;
    fail(`an error occurred forwarding ${port} -> ${port}: ${e.message}`);
  });
  data.on('error', () => conn.destroy());
  data.pipe(conn);
  conn.pipe(data);
  await new Promise<void>((resolve) => conn.once('close', () => resolve()));
  // The pod's side is gone: what still comes for it is dropped (unread, it would pause the whole connection).
  data.unpipe(conn);
  data.resume();
  if (!failed && !error.writableEnded) error.end();
}
