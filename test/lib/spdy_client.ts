import { randomBytes } from 'node:crypto';
import { Duplex } from 'node:stream';
import { connect, type ConnectionOptions, type TLSSocket } from 'node:tls';
import { constants as z, createDeflate, type Deflate } from 'node:zlib';

import { spdy3Dictionary } from '../../pkg/streaming/spdy_dictionary.js';

// The client side of SPDY/3.1 as Kubernetes clients (kubectl, the API
// server) speak it to a kubelet: an HTTP upgrade, then streams opened with
// SYN_STREAM (their header blocks through one zlib context with the SPDY
// dictionary) and DATA frames. Enough for exec and port-forward in tests; the
// server's header blocks are not read (nothing here needs them).

export interface Upgraded {
  status: number;
  headers: Record<string, string>;
  /** The answer's body when it is not 101. */
  body: string;
  socket: TLSSocket;
  /** Bytes after the answer's headers. */
  rest: Buffer;
}

/** Sends `method path` with `headers` over TLS and reads the answer's head. */
export function httpsUpgrade(o: ConnectionOptions & { host: string; port: number }, method: string, path: string, headers: Record<string, string>): Promise<Upgraded> {
  return new Promise((resolve, reject) => {
    const socket = connect(o, () => {
      socket.write(`${method} ${path} HTTP/1.1\r\nHost: ${o.host}:${o.port}\r\n${Object.entries(headers).map(([k, v]) => `${k}: ${v}\r\n`).join('')}\r\n`);
    });
    let buf = Buffer.alloc(0);
    const onData = (d: Buffer): void => {
      buf = Buffer.concat([buf, d]);
      const end = buf.indexOf('\r\n\r\n');
      if (end < 0) return;
      const [statusLine, ...lines] = buf.subarray(0, end).toString('latin1').split('\r\n');
      const h: Record<string, string> = {};
      for (const l of lines) {
        const i = l.indexOf(':');
        h[l.slice(0, i).trim().toLowerCase()] = l.slice(i + 1).trim();
      }
      const status = Number(/^HTTP\/1\.1 (\d+)/.exec(statusLine ?? '')?.[1] ?? 0);
      const rest = buf.subarray(end + 4);
      if (status === 101) {
        socket.off('data', onData);
        socket.pause();
        resolve({ status, headers: h, body: '', socket, rest });
        return;
      }
      // Not upgraded: the body follows, then the server closes.
      socket.off('data', onData);
      let body = rest.toString();
      socket.on('data', (x: Buffer) => (body += x.toString()));
      socket.on('close', () => resolve({ status, headers: h, body, socket, rest: Buffer.alloc(0) }));
    };
    socket.on('data', onData);
    socket.on('error', reject);
  });
}

export class ClientStream {
  private readonly chunks: Buffer[] = [];
  private ended = false;
  private waiters: Array<() => void> = [];

  constructor(
    readonly id: number,
    private readonly client: SpdyClient,
  ) {}

  /** @internal */
  received(data: Buffer, fin: boolean): void {
    if (data.length > 0) this.chunks.push(data);
    if (fin) this.ended = true;
    for (const w of this.waiters.splice(0)) w();
  }

  write(data: string | Buffer, fin = false): void {
    this.client.data(this.id, Buffer.from(data), fin);
  }

  /** All the server sent on the stream, once it has finished it (FIN or reset). */
  async text(): Promise<string> {
    while (!this.ended) await new Promise<void>((r) => this.waiters.push(r));
    return Buffer.concat(this.chunks).toString();
  }

  /** What the server sent so far. */
  get sofar(): string {
    return Buffer.concat(this.chunks).toString();
  }
}

export class SpdyClient {
  private nextId = 1;
  private readonly deflate: Deflate = createDeflate({ dictionary: spdy3Dictionary });
  private buffer = Buffer.alloc(0);
  private readonly streams = new Map<number, ClientStream>();
  private queue: Promise<void> = Promise.resolve();

  constructor(private readonly socket: Duplex, rest: Buffer = Buffer.alloc(0)) {
    socket.on('data', (d: Buffer) => this.onBytes(d));
    socket.on('close', () => {
      for (const s of this.streams.values()) s.received(Buffer.alloc(0), true);
    });
    socket.on('error', () => undefined);
    if (rest.length > 0) this.onBytes(rest);
    socket.resume();
  }

  private onBytes(d: Buffer): void {
    this.buffer = Buffer.concat([this.buffer, d]);
    while (this.buffer.length >= 8) {
      const length = this.buffer.readUInt32BE(4) & 0xffffff;
      if (this.buffer.length < 8 + length) return;
      const head = this.buffer.subarray(0, 8);
      const body = this.buffer.subarray(8, 8 + length);
      this.buffer = this.buffer.subarray(8 + length);
      const fin = (head[4]! & 1) !== 0;
      if (head.readUInt16BE(0) & 0x8000) {
        const type = head.readUInt16BE(2);
        // RST_STREAM ends a stream; SYN_REPLY, SETTINGS, WINDOW_UPDATE, PING need nothing here.
        if (type === 3) this.streams.get(body.readUInt32BE(0) & 0x7fffffff)?.received(Buffer.alloc(0), true);
        if (type === 2 && fin) this.streams.get(body.readUInt32BE(0) & 0x7fffffff)?.received(Buffer.alloc(0), true);
      } else {
        this.streams.get(head.readUInt32BE(0) & 0x7fffffff)?.received(Buffer.from(body), fin);
      }
    }
  }

  /** Opens a stream with these headers (SYN_STREAM); in order, as the shared zlib context needs. */
  open(headers: Record<string, string>, fin = false): Promise<ClientStream> {
    const id = this.nextId;
    this.nextId += 2;
    const s = new ClientStream(id, this);
    this.streams.set(id, s);
    const p = this.queue.then(async () => {
      const entries = Object.entries(headers);
      const parts: Buffer[] = [u32(entries.length)];
      for (const [k, v] of entries) parts.push(u32(Buffer.byteLength(k)), Buffer.from(k), u32(Buffer.byteLength(v)), Buffer.from(v));
      const block = await this.compress(Buffer.concat(parts));
      const body = Buffer.concat([u32(id), u32(0), Buffer.from([0, 0]), block]);
      const head = Buffer.alloc(8);
      head.writeUInt16BE(0x8000 | 3, 0);
      head.writeUInt16BE(1, 2);
      head.writeUInt32BE(((fin ? 1 : 0) << 24) | body.length, 4);
      this.socket.write(Buffer.concat([head, body]));
      return s;
    });
    this.queue = p.then(() => undefined);
    return p;
  }

  /** @internal */
  data(id: number, data: Buffer, fin: boolean): void {
    const head = Buffer.alloc(8);
    head.writeUInt32BE(id, 0);
    head.writeUInt32BE(((fin ? 1 : 0) << 24) | data.length, 4);
    void this.queue.then(() => this.socket.write(Buffer.concat([head, data])));
  }

  close(): void {
    this.deflate.close();
    this.socket.destroy();
  }

  private compress(input: Buffer): Promise<Buffer> {
    return new Promise((resolve) => {
      const out: Buffer[] = [];
      const onData = (d: Buffer): void => void out.push(d);
      this.deflate.on('data', onData);
      this.deflate.write(input);
      this.deflate.flush(z.Z_SYNC_FLUSH, () => {
        this.deflate.off('data', onData);
        resolve(Buffer.concat(out));
      });
    });
  }
}

function u32(n: number): Buffer {
  const b = Buffer.alloc(4);
  b.writeUInt32BE(n, 0);
  return b;
}

/**
 * The byte stream inside a client WebSocket on an upgraded `socket` (binary
 * frames, masked as a client must): what kubectl tunnels SPDY in for
 * port-forward ("SPDY/3.1+portforward.k8s.io"). The `ws` client refuses that
 * subprotocol name (a '/' is not an RFC 6455 token), hence this.
 */
export function websocketBytes(socket: Duplex, rest: Buffer): Duplex {
  let buf = Buffer.alloc(0);
  const d: Duplex = new Duplex({
    read() {
      socket.resume();
    },
    write(chunk: Buffer, _enc, cb) {
      const mask = randomBytes(4);
      const n = chunk.length;
      const len = n < 126 ? Buffer.from([0x80 | n]) : n < 65536 ? Buffer.from([0x80 | 126, n >> 8, n & 0xff]) : Buffer.concat([Buffer.from([0x80 | 127]), (() => { const b = Buffer.alloc(8); b.writeBigUInt64BE(BigInt(n)); return b; })()]);
      const payload = Buffer.from(chunk);
      for (let i = 0; i < n; i++) payload[i]! ^= mask[i % 4]!;
      socket.write(Buffer.concat([Buffer.from([0x82]), len, mask, payload]), cb);
    },
    final(cb) {
      socket.end();
      cb();
    },
    destroy(e, cb) {
      socket.destroy();
      cb(e);
    },
  });
  const onBytes = (chunk: Buffer): void => {
    buf = Buffer.concat([buf, chunk]);
    for (;;) {
      if (buf.length < 2) return;
      const op = buf[0]! & 0x0f;
      let n = buf[1]! & 0x7f;
      let at = 2;
      if (n === 126) {
        if (buf.length < 4) return;
        n = buf.readUInt16BE(2);
        at = 4;
      } else if (n === 127) {
        if (buf.length < 10) return;
        n = Number(buf.readBigUInt64BE(2));
        at = 10;
      }
      if (buf.length < at + n) return;
      const payload = buf.subarray(at, at + n);
      buf = buf.subarray(at + n);
      if (op === 0x8) {
        d.push(null);
        socket.end();
        return;
      }
      if (op === 0x2 || op === 0x0) d.push(Buffer.from(payload));
    }
  };
  socket.on('data', onBytes);
  socket.on('close', () => d.push(null));
  if (rest.length > 0) onBytes(rest);
  return d;
}
