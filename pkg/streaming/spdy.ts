import { EventEmitter } from 'node:events';
import { Duplex } from 'node:stream';
import { constants as z, createDeflate, createInflate, type Deflate, type Inflate } from 'node:zlib';

import { spdy3Dictionary } from './spdy_dictionary.js';

// SPDY/3.1 as Kubernetes speaks it (kubectl, crictl, kubelet through
// docker/spdystream): the server side of one upgraded connection. The client
// opens the streams (SYN_STREAM with a "streamtype" header, and "port" /
// "requestid" for port-forward); the server answers each with SYN_REPLY,
// moves DATA both ways under SPDY/3.1's per-stream and connection flow
// control windows, answers PINGs and ends streams with FIN or RST_STREAM.
// npm's one SPDY library (spdy-transport, unmaintained since 2018) insists on
// HTTP's :method and :path in every SYN_STREAM, which spdystream never sends,
// so the framing is ours: a small, exact subset of the draft.

const CONTROL = 0x8000;
const VERSION = 3;
const SYN_STREAM = 1;
const SYN_REPLY = 2;
const RST_STREAM = 3;
const SETTINGS = 4;
const PING = 6;
const GOAWAY = 7;
const HEADERS = 8;
const WINDOW_UPDATE = 9;
const FLAG_FIN = 0x01;
const SETTINGS_INITIAL_WINDOW_SIZE = 7;
const RST_PROTOCOL_ERROR = 1;
const RST_CANCEL = 5;
const defaultWindow = 64 * 1024;
/** What this side lets the client send ahead, per stream and on the connection. */
const receiveWindow = 1024 * 1024;
const maxFrame = 16 * 1024 * 1024;

export type Headers = Record<string, string>;

/** One SPDY stream as a Duplex: what the client sends is read, what is written goes to the client. */
export class SpdyStream extends Duplex {
  /** Bytes the consumer got since the last WINDOW_UPDATE (for clients that keep windows; spdystream keeps none). */
  private consumed = 0;
  finReceived = false;

  constructor(
    readonly id: number,
    readonly headers: Headers,
    private readonly session: SpdySession,
  ) {
    super({ allowHalfOpen: true });
  }

  override _read(): void {
    // Data is pushed as it arrives.
  }

  /** DATA from the client. */
  received(data: Buffer, fin: boolean): void {
    if (data.length > 0) {
      this.push(data);
      this.consumed += data.length;
      if (this.consumed >= receiveWindow / 2) {
        this.session.windowUpdate(this.id, this.consumed);
        this.consumed = 0;
      }
    }
    if (fin && !this.finReceived) {
      this.finReceived = true;
      this.push(null);
    }
  }

  // docker/spdystream, the client Kubernetes uses, neither sends nor honours
  // WINDOW_UPDATE: the socket's own backpressure is the only flow control.
  override _write(chunk: Buffer, _enc: BufferEncoding, done: (e?: Error | null) => void): void {
    this.session.data(this.id, chunk, false, done);
  }

  override _final(done: (e?: Error | null) => void): void {
    this.session.data(this.id, Buffer.alloc(0), true, done);
  }

  /** RST_STREAM: the stream is abandoned both ways. */
  reset(): void {
    this.session.rst(this.id, RST_CANCEL);
    this.abort();
  }

  abort(): void {
    if (!this.finReceived) {
      this.finReceived = true;
      this.push(null);
    }
    this.destroy();
  }
}

/** The server side of an upgraded SPDY/3.1 connection. Emits 'stream' (SpdyStream) for each stream the client opens, and 'close'. */
export class SpdySession extends EventEmitter {
  private readonly streams = new Map<number, SpdyStream>();
  private buffer: Buffer = Buffer.alloc(0);
  private readonly inflate: Inflate = createInflate({ dictionary: spdy3Dictionary });
  private readonly deflate: Deflate = createDeflate({ dictionary: spdy3Dictionary });
  private queue: Promise<void> = Promise.resolve();
  private received = 0;
  private closed = false;
  private lastStreamId = 0;

  /** `socket`: the upgraded TCP connection, or a WebSocket's byte stream (SPDY tunnelled over WebSocket). */
  constructor(private readonly socket: Duplex & { setNoDelay?: (on: boolean) => unknown }) {
    super();
    socket.setNoDelay?.(true);
    socket.on('data', (d: Buffer) => {
      this.buffer = this.buffer.length === 0 ? d : Buffer.concat([this.buffer, d]);
      // Frames are handled one at a time, in order: header blocks share one zlib context.
      this.queue = this.queue.then(() => this.drain()).catch((e: unknown) => this.fail(e));
    });
    // An upgraded socket stays half-open after the client's FIN: the client is gone.
    socket.on('end', () => this.shutdown());
    socket.on('close', () => this.shutdown());
    socket.on('error', () => this.shutdown());
    this.settings({ [SETTINGS_INITIAL_WINDOW_SIZE]: receiveWindow });
    // The connection window starts at 64 KiB: open it to ours.
    this.windowUpdate(0, receiveWindow - defaultWindow);
  }

  get isClosed(): boolean {
    return this.closed;
  }

  /** Ends the connection: GOAWAY, then the socket. */
  close(): void {
    if (this.closed) return;
    const body = Buffer.alloc(8);
    body.writeUInt32BE(this.lastStreamId, 0);
    this.control(GOAWAY, 0, body);
    this.socket.end();
    this.shutdown();
  }

  private shutdown(): void {
    if (this.closed) return;
    this.closed = true;
    for (const s of this.streams.values()) s.abort();
    this.streams.clear();
    this.inflate.close();
    this.deflate.close();
    this.socket.destroy();
    this.emit('close');
  }

  private fail(e: unknown): void {
    this.emit('protocolError', e);
    this.shutdown();
  }

  private async drain(): Promise<void> {
    while (!this.closed && this.buffer.length >= 8) {
      const length = this.buffer.readUInt32BE(4) & 0xffffff;
      if (length > maxFrame) throw new Error(`SPDY frame of ${length} bytes`);
      if (this.buffer.length < 8 + length) return;
      const head = this.buffer.subarray(0, 8);
      const body = this.buffer.subarray(8, 8 + length);
      this.buffer = this.buffer.subarray(8 + length);
      const flags = head[4]!;
      if (head.readUInt16BE(0) & CONTROL) {
        const version = head.readUInt16BE(0) & 0x7fff;
        if (version !== VERSION) throw new Error(`SPDY version ${version} (this server speaks 3.1)`);
        await this.onControl(head.readUInt16BE(2), flags, Buffer.from(body));
      } else {
        this.onData(head.readUInt32BE(0) & 0x7fffffff, flags, Buffer.from(body));
      }
    }
  }

  private async onControl(type: number, flags: number, body: Buffer): Promise<void> {
    switch (type) {
      case SYN_STREAM: {
        const id = body.readUInt32BE(0) & 0x7fffffff;
        const headers = await this.readHeaders(body.subarray(10));
        if (id <= this.lastStreamId || id % 2 === 0) {
          this.rst(id, RST_PROTOCOL_ERROR);
          return;
        }
        this.lastStreamId = id;
        const s = new SpdyStream(id, headers, this);
        this.streams.set(id, s);
        s.once('close', () => this.streams.delete(id));
        await this.reply(id);
        if (flags & FLAG_FIN) s.received(Buffer.alloc(0), true);
        this.emit('stream', s);
        return;
      }
      case HEADERS:
        await this.readHeaders(body.subarray(4));
        return;
      case RST_STREAM: {
        const s = this.streams.get(body.readUInt32BE(0) & 0x7fffffff);
        s?.abort();
        return;
      }
      case SETTINGS:
        // The client's window size: without flow control of its own (spdystream), nothing to apply.
        return;
      case PING:
        // Ours are even; the client's odd ones are echoed.
        if (body.readUInt32BE(0) % 2 === 1) this.control(PING, 0, body);
        return;
      case GOAWAY:
        this.close();
        return;
      case WINDOW_UPDATE:
        return;
      default:
      // SYN_REPLY from a client, NOOP, CREDENTIAL: nothing to do.
    }
  }

  private onData(id: number, flags: number, body: Buffer): void {
    this.received += body.length;
    if (this.received >= receiveWindow / 2) {
      this.windowUpdate(0, this.received);
      this.received = 0;
    }
    const s = this.streams.get(id);
    if (!s) return;
    s.received(body, (flags & FLAG_FIN) !== 0);
  }

  private async readHeaders(block: Buffer): Promise<Headers> {
    const raw = await this.zlib(this.inflate, block);
    const headers: Headers = {};
    let o = 0;
    const n = raw.readUInt32BE(o);
    o += 4;
    for (let i = 0; i < n; i++) {
      const nl = raw.readUInt32BE(o);
      const name = raw.subarray(o + 4, o + 4 + nl).toString('latin1').toLowerCase();
      o += 4 + nl;
      const vl = raw.readUInt32BE(o);
      // Several values of one name are NUL-separated; the first is enough for ours.
      headers[name] = raw.subarray(o + 4, o + 4 + vl).toString('latin1').split('\0')[0]!;
      o += 4 + vl;
    }
    return headers;
  }

  private async reply(id: number): Promise<void> {
    const block = await this.zlib(this.deflate, Buffer.from([0, 0, 0, 0]));
    const head = Buffer.alloc(4);
    head.writeUInt32BE(id, 0);
    this.control(SYN_REPLY, 0, Buffer.concat([head, block]));
  }

  /** One header block through the connection's zlib context, flushed (SPDY: Z_SYNC_FLUSH per block). */
  private zlib(stream: Inflate | Deflate, input: Buffer): Promise<Buffer> {
    return new Promise((resolve, reject) => {
      const out: Buffer[] = [];
      const onData = (d: Buffer): void => void out.push(d);
      stream.on('data', onData);
      stream.once('error', reject);
      stream.write(input);
      stream.flush(z.Z_SYNC_FLUSH, () => {
        stream.off('data', onData);
        stream.off('error', reject);
        resolve(Buffer.concat(out));
      });
    });
  }

  /** A DATA frame; `done` once the socket takes more (its backpressure). */
  data(id: number, data: Buffer, fin: boolean, done: (e?: Error | null) => void = () => {}): void {
    if (this.closed) return done();
    const head = Buffer.alloc(8);
    head.writeUInt32BE(id & 0x7fffffff, 0);
    head.writeUInt32BE(((fin ? FLAG_FIN : 0) << 24) | data.length, 4);
    if (this.socket.write(Buffer.concat([head, data]))) done();
    else this.socket.once('drain', () => done());
  }

  rst(id: number, status: number): void {
    const body = Buffer.alloc(8);
    body.writeUInt32BE(id, 0);
    body.writeUInt32BE(status, 4);
    this.control(RST_STREAM, 0, body);
  }

  windowUpdate(id: number, delta: number): void {
    const body = Buffer.alloc(8);
    body.writeUInt32BE(id, 0);
    body.writeUInt32BE(delta, 4);
    this.control(WINDOW_UPDATE, 0, body);
  }

  private settings(values: Record<number, number>): void {
    const entries = Object.entries(values);
    const body = Buffer.alloc(4 + entries.length * 8);
    body.writeUInt32BE(entries.length, 0);
    entries.forEach(([id, v], i) => {
      body.writeUInt32BE(Number(id) & 0xffffff, 4 + i * 8);
      body.writeUInt32BE(v, 8 + i * 8);
    });
    this.control(SETTINGS, 0, body);
  }

  private control(type: number, flags: number, body: Buffer): void {
    if (this.closed) return;
    const head = Buffer.alloc(8);
    head.writeUInt16BE(CONTROL | VERSION, 0);
    head.writeUInt16BE(type, 2);
    head.writeUInt32BE((flags << 24) | body.length, 4);
    this.socket.write(Buffer.concat([head, body]));
  }
}
