import assert from 'node:assert/strict';
import { once } from 'node:events';
import { type AddressInfo, connect, createServer, type Socket } from 'node:net';
import { describe, test } from 'node:test';
import { constants as z, createDeflate } from 'node:zlib';

import { connectionReceiveWindow, defaultWindow, maxConcurrentStreams, maxHeaderBlock, SpdySession, type SpdyStream, streamReceiveWindow } from '../../pkg/streaming/spdy.js';
import { spdy3Dictionary } from '../../pkg/streaming/spdy_dictionary.js';

// SPDY/3.1 flow control and the header-block cap (issue 13, deliverable 5):
// credit for what a stream's consumer took and nothing more, the socket
// paused for a client that ignores windows, the peer's windows kept when it
// keeps them, and a header block that inflates past the cap ending the
// connection (GOAWAY) instead of the process's memory.

interface Frame {
  control: boolean;
  type: number;
  id: number;
  flags: number;
  body: Buffer;
}

const u32 = (n: number): Buffer => {
  const b = Buffer.alloc(4);
  b.writeUInt32BE(n >>> 0, 0);
  return b;
};

/** A raw SPDY/3 client that records every frame the server sends. */
class RawClient {
  private readonly deflate = createDeflate({ dictionary: spdy3Dictionary });
  private buf = Buffer.alloc(0);
  readonly frames: Frame[] = [];

  constructor(readonly socket: Socket) {
    socket.on('data', (d: Buffer) => {
      this.buf = Buffer.concat([this.buf, d]);
      while (this.buf.length >= 8 && this.buf.length >= 8 + (this.buf.readUInt32BE(4) & 0xffffff)) {
        const len = this.buf.readUInt32BE(4) & 0xffffff;
        const control = (this.buf[0]! & 0x80) !== 0;
        const body = Buffer.from(this.buf.subarray(8, 8 + len));
        this.frames.push({ control, type: control ? this.buf.readUInt16BE(2) : 0, id: control ? (len >= 4 ? body.readUInt32BE(0) & 0x7fffffff : 0) : this.buf.readUInt32BE(0) & 0x7fffffff, flags: this.buf[4]!, body });
        this.buf = this.buf.subarray(8 + len);
      }
    });
    socket.on('error', () => undefined);
  }

  compress(raw: Buffer): Promise<Buffer> {
    return new Promise((resolve) => {
      const out: Buffer[] = [];
      const on = (d: Buffer): void => void out.push(d);
      this.deflate.on('data', on);
      this.deflate.write(raw);
      this.deflate.flush(z.Z_SYNC_FLUSH, () => {
        this.deflate.off('data', on);
        resolve(Buffer.concat(out));
      });
    });
  }

  static headerBlock(headers: Record<string, string>): Buffer {
    const parts = [u32(Object.keys(headers).length)];
    for (const [k, v] of Object.entries(headers)) parts.push(u32(Buffer.byteLength(k)), Buffer.from(k), u32(Buffer.byteLength(v)), Buffer.from(v));
    return Buffer.concat(parts);
  }

  control(type: number, body: Buffer, flags = 0): void {
    const head = Buffer.alloc(8);
    head.writeUInt16BE(0x8003, 0);
    head.writeUInt16BE(type, 2);
    head.writeUInt32BE((flags << 24) | body.length, 4);
    this.socket.write(Buffer.concat([head, body]));
  }

  async synStream(id: number, raw: Buffer): Promise<void> {
    this.control(1, Buffer.concat([u32(id), u32(0), Buffer.from([0, 0]), await this.compress(raw)]));
  }

  data(id: number, data: Buffer, fin = false): void {
    this.socket.write(Buffer.concat([u32(id), u32(((fin ? 1 : 0) << 24) | data.length), data]));
  }

  windowUpdates(id: number): number {
    return this.frames.filter((f) => f.control && f.type === 9 && f.id === id).reduce((n, f) => n + f.body.readUInt32BE(4), 0);
  }

  dataFor(id: number): number {
    return this.frames.filter((f) => !f.control && f.id === id).reduce((n, f) => n + f.body.length, 0);
  }

  async until<T>(what: string, f: () => T | undefined, ms = 5000): Promise<T> {
    const deadline = Date.now() + ms;
    for (;;) {
      const v = f();
      if (v !== undefined && v !== false) return v;
      if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
      await new Promise((r) => setTimeout(r, 5));
    }
  }
}

async function pair(o: { idleTimeoutMs?: number } = {}): Promise<{ session: SpdySession; client: RawClient; close: () => void }> {
  const server = createServer();
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  const accepted = once(server, 'connection');
  const socket = connect((server.address() as AddressInfo).port, '127.0.0.1');
  const [serverSide] = (await accepted) as [Socket];
  const session = new SpdySession(serverSide, o);
  session.on('protocolError', () => undefined);
  return { session, client: new RawClient(socket), close: () => (socket.destroy(), serverSide.destroy(), server.close()) };
}

async function openStream(session: SpdySession, client: RawClient, id: number, headers: Record<string, string> = { streamtype: 'stdin' }): Promise<SpdyStream> {
  const got = once(session, 'stream') as Promise<[SpdyStream]>;
  await client.synStream(id, RawClient.headerBlock(headers));
  return (await got)[0];
}

const ping = (client: RawClient, id: number): void => client.control(6, u32(id));
const pongs = (client: RawClient, id: number): number => client.frames.filter((f) => f.control && f.type === 6 && f.id === id).length;

describe('SPDY/3.1 header blocks', () => {
  test('a header block that inflates past the cap ends the connection with GOAWAY, without the memory it asks for', async () => {
    const { session, client, close } = await pair();
    try {
      let streams = 0;
      session.on('stream', () => streams++);
      const closed = once(session, 'close');
      // One header whose value is 256 MiB of zeros: about 256 KiB on the wire.
      const bomb = 256 * 1024 * 1024;
      const before = process.memoryUsage().rss;
      const raw = Buffer.concat([u32(1), u32(1), Buffer.from('x'), u32(bomb)]);
      const compressed = await new Promise<Buffer>((resolve) => {
        const out: Buffer[] = [];
        const on = (d: Buffer): void => void out.push(d);
        const d = client['deflate'];
        d.on('data', on);
        d.write(raw);
        const zeros = Buffer.alloc(4 * 1024 * 1024);
        for (let i = 0; i < bomb / zeros.length; i++) d.write(zeros);
        d.flush(z.Z_SYNC_FLUSH, () => {
          d.off('data', on);
          resolve(Buffer.concat(out));
        });
      });
      assert.ok(compressed.length < 1024 * 1024, `the bomb is ${compressed.length} bytes compressed`);
      client.control(1, Buffer.concat([u32(1), u32(0), Buffer.from([0, 0]), compressed]));
      await closed;
      const goaway = await client.until('GOAWAY', () => client.frames.find((f) => f.control && f.type === 7));
      assert.equal(goaway.body.readUInt32BE(4), 1, 'GOAWAY status is not PROTOCOL_ERROR');
      assert.equal(streams, 0, 'a stream was opened from the bomb');
      const grown = (process.memoryUsage().rss - before) / (1024 * 1024);
      assert.ok(grown < 64, `the process grew by ${grown.toFixed(0)} MiB inflating a ${bomb >> 20} MiB header block`);
    } finally {
      close();
    }
  });

  test('a header block under the cap is read as it is', async () => {
    const { session, client, close } = await pair();
    try {
      const big = 'v'.repeat(maxHeaderBlock - 1024);
      const s = await openStream(session, client, 1, { streamtype: 'data', big });
      assert.equal(s.headers['big']?.length, big.length);
      assert.equal(s.headers['streamtype'], 'data');
    } finally {
      close();
    }
  });
});

describe('SPDY/3.1 flow control', () => {
  test('the session announces 64 KiB stream windows and opens the connection window to 1 MiB', async () => {
    const { client, close } = await pair();
    try {
      const settings = await client.until('SETTINGS', () => client.frames.find((f) => f.control && f.type === 4));
      const entries = new Map<number, number>();
      for (let i = 0; i < settings.body.readUInt32BE(0); i++) entries.set(settings.body.readUInt32BE(4 + i * 8) & 0xffffff, settings.body.readUInt32BE(8 + i * 8));
      assert.equal(entries.get(7), streamReceiveWindow);
      assert.equal(streamReceiveWindow, 64 * 1024);
      assert.equal(entries.get(4), maxConcurrentStreams);
      await client.until('connection WINDOW_UPDATE', () => client.windowUpdates(0) > 0);
      assert.equal(client.windowUpdates(0) + defaultWindow, connectionReceiveWindow);
    } finally {
      close();
    }
  });

  test('credit comes back only for what the consumer took', async () => {
    const { session, client, close } = await pair();
    try {
      const s = await openStream(session, client, 1);
      // A full window, nobody reading: no credit for the stream.
      for (let i = 0; i < 4; i++) client.data(1, Buffer.alloc(16 * 1024, i));
      await client.until('the data to arrive', () => s.readableLength + s.backlog >= streamReceiveWindow);
      ping(client, 1);
      await client.until('the ping echo', () => pongs(client, 1) > 0);
      assert.equal(client.windowUpdates(1), 0, 'credit was given for data nobody read');
      assert.ok(!session.isReadingPaused, 'a client within its window was paused');
      // The consumer takes 40 KiB: credit for that, no more.
      let taken = 0;
      while (taken < 40 * 1024) {
        const chunk = s.read() as Buffer | null;
        if (chunk === null) {
          await once(s, 'readable');
          continue;
        }
        taken += chunk.length;
      }
      await client.until('a WINDOW_UPDATE for the stream', () => client.windowUpdates(1) > 0);
      const credit = client.windowUpdates(1);
      assert.ok(credit >= streamReceiveWindow / 2, `credit ${credit}`);
      assert.ok(credit <= taken + s.readableLength, `credit ${credit} for ${taken} bytes taken (${s.readableLength} buffered for the reader)`);
    } finally {
      close();
    }
  });

  test('a client that ignores its window is paused until the consumer drains, then read again', async () => {
    const { session, client, close } = await pair();
    try {
      const s = await openStream(session, client, 1);
      // 1 MiB on a stream of 64 KiB, as spdystream would send it.
      for (let i = 0; i < 64; i++) client.data(1, Buffer.alloc(16 * 1024, 1));
      await client.until('reading to pause', () => session.isReadingPaused);
      ping(client, 3);
      await new Promise((r) => setTimeout(r, 100));
      assert.equal(pongs(client, 3), 0, 'frames behind a full stream were read');
      assert.ok(s.backlog <= streamReceiveWindow + 64 * 1024, `the stream holds ${s.backlog} bytes`);
      let total = 0;
      s.on('data', (d: Buffer) => (total += d.length));
      await client.until('all of it to be read', () => total === 1024 * 1024);
      await client.until('the ping behind it to be answered', () => pongs(client, 3) > 0);
      assert.ok(!session.isReadingPaused);
    } finally {
      close();
    }
  });

  test('paused with nothing taken for the idle timeout (kubelet: 4 h), the connection is closed', async () => {
    const { session, client, close } = await pair({ idleTimeoutMs: 400 });
    try {
      await openStream(session, client, 1);
      for (let i = 0; i < 16; i++) client.data(1, Buffer.alloc(16 * 1024, 1));
      await client.until('reading to pause', () => session.isReadingPaused);
      const idle = once(session, 'idleTimeout');
      await once(session, 'close');
      await idle;
      await client.until('GOAWAY', () => client.frames.some((f) => f.control && f.type === 7));
    } finally {
      close();
    }
  });

  test("the peer's windows bound what is sent once it keeps them", async () => {
    const { session, client, close } = await pair();
    try {
      // SETTINGS_INITIAL_WINDOW_SIZE 1000.
      client.control(4, Buffer.concat([u32(1), u32(7), u32(1000)]));
      const s = await openStream(session, client, 1, { streamtype: 'stdout' });
      s.resume();
      const written = new Promise<void>((r) => s.write(Buffer.alloc(5000, 7), () => r()));
      await client.until('the first 1000 bytes', () => client.dataFor(1) === 1000);
      await new Promise((r) => setTimeout(r, 100));
      assert.equal(client.dataFor(1), 1000, 'more than the window was sent');
      client.control(9, Buffer.concat([u32(1), u32(2500)]));
      await client.until('2500 more', () => client.dataFor(1) === 3500);
      client.control(9, Buffer.concat([u32(1), u32(10000)]));
      await written;
      await client.until('the rest', () => client.dataFor(1) === 5000);
    } finally {
      close();
    }
  });

  test('a peer that never sends WINDOW_UPDATE (spdystream) is not held to a window', async () => {
    const { session, client, close } = await pair();
    try {
      const s = await openStream(session, client, 1, { streamtype: 'stdout' });
      s.resume();
      s.write(Buffer.alloc(512 * 1024, 1));
      await client.until('512 KiB', () => client.dataFor(1) === 512 * 1024);
    } finally {
      close();
    }
  });

  test(`more than ${maxConcurrentStreams} streams at once are refused`, async () => {
    const { session, client, close } = await pair();
    try {
      const opened: SpdyStream[] = [];
      session.on('stream', (s: SpdyStream) => opened.push(s));
      for (let i = 0; i <= maxConcurrentStreams; i++) await client.synStream(1 + 2 * i, RawClient.headerBlock({ streamtype: 'data' }));
      const last = 1 + 2 * maxConcurrentStreams;
      const rst = await client.until('RST_STREAM', () => client.frames.find((f) => f.control && f.type === 3 && f.id === last));
      assert.equal(rst.body.readUInt32BE(4), 3, 'not REFUSED_STREAM');
      assert.equal(opened.length, maxConcurrentStreams);
    } finally {
      close();
    }
  });
});
