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
//
// Flow control, both ways, so that no client and no consumer can make this
// process hold more than a bounded amount per connection:
//
//   client → here: each stream has a receive window (64 KiB, the SPDY/3.1
//   initial size) and the connection one of 1 MiB. Credit goes back in
//   WINDOW_UPDATE only for bytes the stream's consumer has taken (the exec's
//   stdin pipe, the port-forward socket: a pipe() stops taking when its
//   destination is full). A client that ignores windows — spdystream, so
//   kubectl and crictl, keeps none — is stopped the other way: once a stream
//   holds more than its window, the socket is paused (TCP's window then
//   stops the client) until the consumer has drained it.
//
//   here → client: the peer's windows are respected once it shows it keeps
//   them (a WINDOW_UPDATE, or SETTINGS with an initial window size); a peer
//   that never sends one (spdystream again) has only TCP's window, which the
//   socket's own backpressure ('drain') honours.
//
// Header blocks are inflated through the connection's zlib context with a cap
// (1 MiB decompressed): a bigger one (a zlib bomb) ends the connection with
// GOAWAY before it can grow anything.

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
const SETTINGS_MAX_CONCURRENT_STREAMS = 4;
const SETTINGS_INITIAL_WINDOW_SIZE = 7;
const RST_PROTOCOL_ERROR = 1;
const RST_REFUSED_STREAM = 3;
const RST_CANCEL = 5;
const GOAWAY_PROTOCOL_ERROR = 1;

/** SPDY/3.1's initial window, per stream and for the connection, until SETTINGS or WINDOW_UPDATE say otherwise. */
export const defaultWindow = 64 * 1024;
/** What a stream may hold unconsumed (its receive window: the spec's initial size). */
export const streamReceiveWindow = defaultWindow;
/** What the connection as a whole may hold unconsumed: several streams' worth, so one stalled stream leaves room for the others. */
export const connectionReceiveWindow = 1024 * 1024;
/** A header block larger than this once inflated ends the connection. */
export const maxHeaderBlock = 1024 * 1024;
/** Streams open at once; more are refused (RST_STREAM REFUSED_STREAM). */
export const maxConcurrentStreams = 100;
/** The frame length field is 24 bits; DATA frames are cut to this when sending. */
const maxFrame = 16 * 1024 * 1024;
const maxSendFrame = 32 * 1024;
/** While reading is paused, a PING this often finds out if the client is still there (a write to a closed peer fails). */
const probeMs = 5000;
/**
 * Paused this long with nothing read or taken, the connection is closed:
 * kubelet's streamingConnectionIdleTimeout (4 h). A client that left while
 * paused is not always seen: behind rootlesskit's port driver, whose copy
 * into this socket blocks, neither its FIN nor a failed write ever arrives.
 */
export const defaultIdleTimeoutMs = 4 * 60 * 60 * 1000;

export type Headers = Record<string, string>;

export class HeaderBlockTooLarge extends Error {
  constructor() {
    super(`SPDY header block inflates to more than ${maxHeaderBlock} bytes`);
  }
}

/** One SPDY stream as a Duplex: what the client sends is read, what is written goes to the client. */
export class SpdyStream extends Duplex {
  /** DATA received and not yet taken by the consumer (bounded by the window, or by the paused socket). */
  private inbox: Buffer[] = [];
  private inboxBytes = 0;
  /** The consumer asked for more (_read) and has not been given it. */
  private wanted = false;
  private finPending = false;
  /** Bytes taken by the consumer since the last WINDOW_UPDATE for the stream. */
  private unacked = 0;
  finReceived = false;
  /** What the client still lets this side send on the stream (its window). */
  sendWindow: number;

  constructor(
    readonly id: number,
    readonly headers: Headers,
    private readonly session: SpdySession,
    initialSendWindow: number,
  ) {
    super({ allowHalfOpen: true });
    this.sendWindow = initialSendWindow;
  }

  /** Bytes held for the consumer. */
  get backlog(): number {
    return this.inboxBytes;
  }

  override _read(): void {
    this.wanted = true;
    this.deliver();
  }

  /** DATA from the client. */
  received(data: Buffer, fin: boolean): void {
    if (this.finReceived || this.destroyed) {
      // After FIN or abort nothing more is read: give the connection its credit back.
      this.session.consumed(undefined, data.length);
      return;
    }
    if (data.length > 0) {
      this.inbox.push(data);
      this.inboxBytes += data.length;
    }
    if (fin) this.finPending = true;
    this.deliver();
  }

  /** Hands the consumer what it asked for; credit goes back for what it took. */
  private deliver(): void {
    let taken = 0;
    while (this.wanted && this.inbox.length > 0) {
      const chunk = this.inbox.shift()!;
      this.inboxBytes -= chunk.length;
      taken += chunk.length;
      this.wanted = this.push(chunk);
    }
    if (this.inbox.length === 0 && this.finPending && !this.finReceived) {
      this.finReceived = true;
      this.push(null);
    }
    if (taken > 0) {
      this.unacked += taken;
      // Half the window at a time (as HTTP/2 implementations do): fewer frames, never a stall.
      if (this.unacked >= streamReceiveWindow / 2 && !this.finReceived) {
        this.session.windowUpdate(this.id, this.unacked);
        this.unacked = 0;
      }
      this.session.consumed(this, taken);
    } else {
      this.session.consumed(this, 0);
    }
  }

  override _write(chunk: Buffer, _enc: BufferEncoding, done: (e?: Error | null) => void): void {
    this.session.send(this, chunk, false).then(() => done(), done);
  }

  override _final(done: (e?: Error | null) => void): void {
    this.session.send(this, Buffer.alloc(0), true).then(() => done(), done);
  }

  /** RST_STREAM: the stream is abandoned both ways. */
  reset(): void {
    this.session.rst(this.id, RST_CANCEL);
    this.abort();
  }

  abort(): void {
    const dropped = this.inboxBytes;
    this.inbox = [];
    this.inboxBytes = 0;
    if (!this.finReceived) {
      this.finReceived = true;
      if (!this.destroyed) this.push(null);
    }
    this.session.consumed(this, dropped);
    this.destroy();
  }
}

/** The server side of an upgraded SPDY/3.1 connection. Emits 'stream' (SpdyStream) for each stream the client opens, and 'close'. */
export class SpdySession extends EventEmitter {
  private readonly streams = new Map<number, SpdyStream>();
  /** Bytes from the socket not yet parsed into frames. */
  private chunks: Buffer[] = [];
  private buffered = 0;
  private readonly inflate: Inflate = createInflate({ dictionary: spdy3Dictionary });
  private readonly deflate: Deflate = createDeflate({ dictionary: spdy3Dictionary });
  private queue: Promise<void> = Promise.resolve();
  /** Connection-level bytes consumed since the last WINDOW_UPDATE of stream 0. */
  private connUnacked = 0;
  private closed = false;
  private lastStreamId = 0;
  /** Streams holding more than their window (the client ignores windows): reading waits for them. */
  private readonly overfull = new Set<SpdyStream>();
  private readingPaused = false;
  private probe: NodeJS.Timeout | undefined;
  private probeId = 0;
  /** When a frame was last read or data last taken by a consumer. */
  private lastProgress = Date.now();
  private readonly idleTimeoutMs: number;
  /** The peer keeps windows (it sent WINDOW_UPDATE or an initial window size): its windows bound what is sent. */
  private peerKeepsWindows = false;
  private peerInitialWindow = defaultWindow;
  private sendWindow = defaultWindow;
  private windowWaiters: Array<() => void> = [];

  /** `socket`: the upgraded TCP connection, or a WebSocket's byte stream (SPDY tunnelled over WebSocket). */
  constructor(
    private readonly socket: Duplex & { setNoDelay?: (on: boolean) => unknown },
    o: { idleTimeoutMs?: number } = {},
  ) {
    super();
    this.idleTimeoutMs = o.idleTimeoutMs ?? defaultIdleTimeoutMs;
    socket.setNoDelay?.(true);
    socket.on('data', (d: Buffer) => {
      this.chunks.push(d);
      this.buffered += d.length;
      this.kick();
    });
    // An upgraded socket stays half-open after the client's FIN: the client is gone.
    socket.on('end', () => this.shutdown());
    socket.on('close', () => this.shutdown());
    socket.on('error', () => this.shutdown());
    socket.on('drain', () => this.wakeWriters());
    this.settings({ [SETTINGS_MAX_CONCURRENT_STREAMS]: maxConcurrentStreams, [SETTINGS_INITIAL_WINDOW_SIZE]: streamReceiveWindow });
    // The connection window starts at 64 KiB: open it to ours.
    this.windowUpdate(0, connectionReceiveWindow - defaultWindow);
  }

  get isClosed(): boolean {
    return this.closed;
  }

  /** Reading from the client is paused (a stream's consumer is not keeping up). */
  get isReadingPaused(): boolean {
    return this.readingPaused;
  }

  /** Ends the connection: GOAWAY, then the socket. */
  close(status = 0): void {
    if (this.closed) return;
    const body = Buffer.alloc(8);
    body.writeUInt32BE(this.lastStreamId, 0);
    body.writeUInt32BE(status, 4);
    this.control(GOAWAY, 0, body);
    this.socket.end();
    this.shutdown();
  }

  private shutdown(): void {
    if (this.closed) return;
    this.closed = true;
    if (this.probe) clearInterval(this.probe);
    for (const s of this.streams.values()) s.abort();
    this.streams.clear();
    this.overfull.clear();
    this.inflate.close();
    this.deflate.close();
    this.chunks = [];
    this.buffered = 0;
    this.socket.destroy();
    this.wakeWriters();
    this.emit('close');
  }

  private fail(e: unknown): void {
    this.emit('protocolError', e);
    this.close(GOAWAY_PROTOCOL_ERROR);
  }

  private kick(): void {
    // Frames are handled one at a time, in order: header blocks share one zlib context.
    this.queue = this.queue.then(() => this.drain()).catch((e: unknown) => this.fail(e));
  }

  /** The first `n` buffered bytes (n <= buffered), removed. */
  private take(n: number): Buffer {
    const first = this.chunks[0]!;
    if (first.length >= n) {
      const out = first.subarray(0, n);
      if (first.length === n) this.chunks.shift();
      else this.chunks[0] = first.subarray(n);
      this.buffered -= n;
      return out;
    }
    const all = Buffer.concat(this.chunks, this.buffered);
    this.chunks = all.length > n ? [all.subarray(n)] : [];
    this.buffered -= n;
    return all.subarray(0, n);
  }

  /** The frame head, without taking it. */
  private head(): Buffer {
    if (this.chunks[0]!.length < 8) this.chunks = [Buffer.concat(this.chunks, this.buffered)];
    return this.chunks[0]!.subarray(0, 8);
  }

  private async drain(): Promise<void> {
    while (!this.closed && !this.readingPaused && this.buffered >= 8) {
      const head = this.head();
      const length = head.readUInt32BE(4) & 0xffffff;
      if (length > maxFrame) throw new Error(`SPDY frame of ${length} bytes`);
      if (this.buffered < 8 + length) return;
      const frame = this.take(8 + length);
      this.lastProgress = Date.now();
      const flags = frame[4]!;
      if (frame.readUInt16BE(0) & CONTROL) {
        const version = frame.readUInt16BE(0) & 0x7fff;
        if (version !== VERSION) throw new Error(`SPDY version ${version} (this server speaks 3.1)`);
        // Copied: what a control frame leaves behind (headers) must not keep a socket chunk alive.
        await this.onControl(frame.readUInt16BE(2), flags, Buffer.from(frame.subarray(8)));
      } else {
        // Not copied: DATA is held only until its consumer takes it, and that is bounded by the window.
        this.onData(frame.readUInt32BE(0) & 0x7fffffff, flags, frame.subarray(8));
      }
    }
  }

  private async onControl(type: number, flags: number, body: Buffer): Promise<void> {
    switch (type) {
      case SYN_STREAM: {
        if (body.length < 10) throw new Error('SYN_STREAM too short');
        const id = body.readUInt32BE(0) & 0x7fffffff;
        const headers = await this.readHeaders(body.subarray(10));
        if (this.closed) return;
        if (id <= this.lastStreamId || id % 2 === 0) {
          this.rst(id, RST_PROTOCOL_ERROR);
          return;
        }
        this.lastStreamId = id;
        if (this.streams.size >= maxConcurrentStreams) {
          this.rst(id, RST_REFUSED_STREAM);
          return;
        }
        const s = new SpdyStream(id, headers, this, this.peerInitialWindow);
        this.streams.set(id, s);
        s.once('close', () => this.forget(s));
        await this.reply(id);
        if (flags & FLAG_FIN) s.received(Buffer.alloc(0), true);
        this.emit('stream', s);
        return;
      }
      case HEADERS:
        if (body.length < 4) throw new Error('HEADERS too short');
        await this.readHeaders(body.subarray(4));
        return;
      case RST_STREAM: {
        if (body.length < 8) throw new Error('RST_STREAM too short');
        const s = this.streams.get(body.readUInt32BE(0) & 0x7fffffff);
        s?.abort();
        return;
      }
      case SETTINGS:
        this.onSettings(body);
        return;
      case PING:
        if (body.length < 4) throw new Error('PING too short');
        // Ours are even; the client's odd ones are echoed.
        if (body.readUInt32BE(0) % 2 === 1) this.control(PING, 0, body.subarray(0, 4));
        return;
      case GOAWAY:
        this.close();
        return;
      case WINDOW_UPDATE: {
        if (body.length < 8) throw new Error('WINDOW_UPDATE too short');
        const id = body.readUInt32BE(0) & 0x7fffffff;
        const delta = body.readUInt32BE(4) & 0x7fffffff;
        this.peerKeepsWindows = true;
        if (id === 0) this.sendWindow += delta;
        else {
          const s = this.streams.get(id);
          if (s) s.sendWindow += delta;
        }
        this.wakeWriters();
        return;
      }
      default:
      // SYN_REPLY from a client, NOOP, CREDENTIAL: nothing to do.
    }
  }

  private onSettings(body: Buffer): void {
    if (body.length < 4) throw new Error('SETTINGS too short');
    const n = body.readUInt32BE(0);
    if (body.length < 4 + n * 8) throw new Error('SETTINGS shorter than its entries');
    for (let i = 0; i < n; i++) {
      const id = body.readUInt32BE(4 + i * 8) & 0xffffff;
      const value = body.readUInt32BE(8 + i * 8);
      if (id !== SETTINGS_INITIAL_WINDOW_SIZE) continue;
      if (value > 0x7fffffff) throw new Error(`SETTINGS initial window ${value}`);
      // A new initial size changes every open stream's window by the difference (SPDY/3.1 §2.6.8).
      const delta = value - this.peerInitialWindow;
      this.peerInitialWindow = value;
      this.peerKeepsWindows = true;
      for (const s of this.streams.values()) s.sendWindow += delta;
    }
    this.wakeWriters();
  }

  private onData(id: number, flags: number, body: Buffer): void {
    const s = this.streams.get(id);
    if (!s) {
      // No one will read it: its share of the connection window comes back at once.
      this.consumed(undefined, body.length);
      return;
    }
    s.received(body, (flags & FLAG_FIN) !== 0);
  }

  /**
   * `s`'s consumer took `bytes` (or they were dropped): the connection's
   * credit, and whether reading waits for `s`.
   */
  consumed(s: SpdyStream | undefined, bytes: number): void {
    if (bytes > 0 && !this.closed) {
      this.lastProgress = Date.now();
      this.connUnacked += bytes;
      if (this.connUnacked >= connectionReceiveWindow / 4) {
        this.windowUpdate(0, this.connUnacked);
        this.connUnacked = 0;
      }
    }
    if (!s) return;
    if (s.backlog > streamReceiveWindow && !s.destroyed) this.overfull.add(s);
    else this.overfull.delete(s);
    this.pauseReading(this.overfull.size > 0);
  }

  private forget(s: SpdyStream): void {
    this.streams.delete(s.id);
    if (s.backlog > 0) s.abort();
    this.overfull.delete(s);
    this.pauseReading(this.overfull.size > 0);
    this.wakeWriters();
  }

  private pauseReading(pause: boolean): void {
    if (pause === this.readingPaused || this.closed) return;
    this.readingPaused = pause;
    if (pause) {
      this.socket.pause();
      // Paused, a client that is gone goes unnoticed (its FIN waits behind the unread bytes) until a write fails.
      this.probe = setInterval(() => {
        if (Date.now() - this.lastProgress > this.idleTimeoutMs) {
          this.emit('idleTimeout');
          this.close();
          return;
        }
        this.probeId = (this.probeId + 2) & 0x7ffffffe;
        const body = Buffer.alloc(4);
        body.writeUInt32BE(this.probeId, 0);
        this.control(PING, 0, body);
      }, Math.min(probeMs, this.idleTimeoutMs / 2));
      this.probe.unref();
    } else {
      if (this.probe) clearInterval(this.probe);
      this.probe = undefined;
      this.socket.resume();
      this.kick();
    }
  }

  private async readHeaders(block: Buffer): Promise<Headers> {
    const raw = await this.inflateBlock(block);
    const headers: Headers = {};
    let o = 0;
    const n = raw.readUInt32BE(o);
    o += 4;
    for (let i = 0; i < n; i++) {
      const nl = raw.readUInt32BE(o);
      if (o + 4 + nl > raw.length) throw new Error('SPDY header name past the end of its block');
      const name = raw.subarray(o + 4, o + 4 + nl).toString('latin1').toLowerCase();
      o += 4 + nl;
      const vl = raw.readUInt32BE(o);
      if (o + 4 + vl > raw.length) throw new Error('SPDY header value past the end of its block');
      // Several values of one name are NUL-separated; the first is enough for ours.
      headers[name] = raw.subarray(o + 4, o + 4 + vl).toString('latin1').split('\0')[0]!;
      o += 4 + vl;
    }
    return headers;
  }

  private async reply(id: number): Promise<void> {
    const block = await this.deflateBlock(Buffer.from([0, 0, 0, 0]));
    const head = Buffer.alloc(4);
    head.writeUInt32BE(id, 0);
    this.control(SYN_REPLY, 0, Buffer.concat([head, block]));
  }

  /** One header block through the connection's inflate context, flushed; over maxHeaderBlock inflated it fails, and the context with it. */
  private inflateBlock(input: Buffer): Promise<Buffer> {
    const stream = this.inflate;
    return new Promise((resolve, reject) => {
      const out: Buffer[] = [];
      let total = 0;
      const cleanup = (): void => {
        stream.off('data', onData);
        stream.off('error', onError);
      };
      const onError = (e: Error): void => {
        cleanup();
        reject(e);
      };
      const onData = (d: Buffer): void => {
        total += d.length;
        if (total > maxHeaderBlock) {
          cleanup();
          // Destroyed, zlib stops between output chunks: the bomb goes no further.
          stream.destroy();
          reject(new HeaderBlockTooLarge());
          return;
        }
        out.push(d);
      };
      stream.on('data', onData);
      stream.once('error', onError);
      stream.write(input);
      stream.flush(z.Z_SYNC_FLUSH, () => {
        cleanup();
        if (total <= maxHeaderBlock) resolve(Buffer.concat(out));
      });
    });
  }

  private deflateBlock(input: Buffer): Promise<Buffer> {
    const stream = this.deflate;
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

  private wakeWriters(): void {
    for (const w of this.windowWaiters.splice(0)) w();
  }

  private waitForWriters(): Promise<void> {
    return new Promise((resolve) => this.windowWaiters.push(resolve));
  }

  /**
   * `data` on stream `s` as DATA frames, within the peer's windows (when it
   * keeps them); resolves once the socket has taken the last frame without
   * going over its buffer, or the stream or connection is gone.
   */
  async send(s: SpdyStream, data: Buffer, fin: boolean): Promise<void> {
    let off = 0;
    let sent = false;
    for (;;) {
      if (this.closed || s.destroyed) return;
      // The socket's own buffer first: what TCP has not taken waits here, not in more frames.
      if (this.socket.writableNeedDrain) {
        await this.waitForWriters();
        continue;
      }
      if (sent && off >= data.length) return;
      let n = Math.min(data.length - off, maxSendFrame);
      if (n > 0 && this.peerKeepsWindows) {
        n = Math.min(n, s.sendWindow, this.sendWindow);
        if (n <= 0) {
          await this.waitForWriters();
          continue;
        }
        s.sendWindow -= n;
        this.sendWindow -= n;
      }
      const head = Buffer.alloc(8);
      head.writeUInt32BE(s.id & 0x7fffffff, 0);
      head.writeUInt32BE(((fin && off + n >= data.length ? FLAG_FIN : 0) << 24) | n, 4);
      this.socket.write(Buffer.concat([head, data.subarray(off, off + n)]));
      off += n;
      sent = true;
    }
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
