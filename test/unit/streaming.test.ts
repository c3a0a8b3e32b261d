import assert from 'node:assert/strict';
import { once } from 'node:events';
import { createServer, connect, type AddressInfo, type Socket } from 'node:net';
import { describe, test } from 'node:test';
import { constants as z, createDeflate, createInflate } from 'node:zlib';

import { WebSocket, WebSocketServer } from 'ws';

import { expectedStreams, negotiate, remoteCommandVersions, ResizeChannel, statusMessage } from '../../pkg/streaming/remotecommand.js';
import { SpdySession, type SpdyStream } from '../../pkg/streaming/spdy.js';
import { spdy3Dictionary } from '../../pkg/streaming/spdy_dictionary.js';
import { TokenCache } from '../../pkg/streaming/tokens.js';
import { websocketSession } from '../../pkg/streaming/websocket.js';

describe('streaming tokens', () => {
  test('a token is good once, within its time, and unguessable ones find nothing', () => {
    let now = 1000;
    const t = new TokenCache<string>(60000, () => now);
    const a = t.put('exec A');
    const b = t.put('exec B');
    assert.notEqual(a, b);
    assert.match(a, /^[A-Za-z0-9_-]{22}$/);
    assert.equal(t.take(a), 'exec A');
    assert.equal(t.take(a), undefined, 'a token was taken twice');
    assert.equal(t.take('AAAAAAAAAAAAAAAAAAAAAA'), undefined);
    now += 60001;
    assert.equal(t.take(b), undefined, 'an expired token was honoured');
    assert.equal(t.size, 0);
  });
});

describe('the remote command protocol', () => {
  test('negotiation takes the client order, among the versions served', () => {
    assert.equal(negotiate(['v5.channel.k8s.io', 'v4.channel.k8s.io'], remoteCommandVersions), 'v5.channel.k8s.io');
    assert.equal(negotiate(['v9.channel.k8s.io', ' v4.channel.k8s.io'], remoteCommandVersions), 'v4.channel.k8s.io');
    assert.equal(negotiate(['base64.channel.k8s.io'], remoteCommandVersions), undefined);
  });
  test('the streams a client opens, by version and tty', () => {
    const all = { stdin: true, stdout: true, stderr: true, tty: false };
    assert.deepEqual(expectedStreams('v4.channel.k8s.io', all), ['error', 'stdin', 'stdout', 'stderr']);
    assert.deepEqual(expectedStreams('v4.channel.k8s.io', { ...all, tty: true }), ['error', 'stdin', 'stdout', 'resize']);
    assert.deepEqual(expectedStreams('v2.channel.k8s.io', { ...all, tty: true }), ['error', 'stdin', 'stdout']);
    assert.deepEqual(expectedStreams('channel.k8s.io', { ...all, tty: true }), ['error', 'stdin', 'stdout', 'stderr']);
  });
  test('the final status: a metav1.Status from v4 (exit code as a cause), text before', () => {
    assert.deepEqual(JSON.parse(statusMessage('v5.channel.k8s.io', { exitCode: 0 })!.toString()), { metadata: {}, status: 'Success' });
    const failed = JSON.parse(statusMessage('v4.channel.k8s.io', { exitCode: 3 })!.toString()) as { status: string; reason: string; details: { causes: unknown[] } };
    assert.equal(failed.status, 'Failure');
    assert.equal(failed.reason, 'NonZeroExitCode');
    assert.deepEqual(failed.details.causes, [{ reason: 'ExitCode', message: '3' }]);
    assert.equal(statusMessage('v3.channel.k8s.io', { exitCode: 0 }), undefined);
    assert.match(statusMessage('v2.channel.k8s.io', { exitCode: 7 })!.toString(), /exit code: 7/);
    assert.match(JSON.parse(statusMessage('v4.channel.k8s.io', { error: 'container is gone' })!.toString()).message as string, /container is gone/);
  });
  test('a terminal size sent before anyone listens is not lost', () => {
    const r = new ResizeChannel();
    r.push({ width: 80, height: 24 });
    r.push({ width: 91, height: 33 });
    const seen: unknown[] = [];
    r.listen((s) => seen.push(s));
    r.push({ width: 100, height: 40 });
    assert.deepEqual(seen, [{ width: 91, height: 33 }, { width: 100, height: 40 }]);
  });
});

// A minimal SPDY/3 client, as docker/spdystream frames it.
class SpdyClient {
  private readonly deflate = createDeflate({ dictionary: spdy3Dictionary });
  private readonly inflate = createInflate({ dictionary: spdy3Dictionary });
  private buf = Buffer.alloc(0);
  readonly frames: Array<{ control: boolean; type: number; id: number; flags: number; body: Buffer }> = [];

  constructor(readonly socket: Socket) {
    socket.on('data', (d: Buffer) => {
      this.buf = Buffer.concat([this.buf, d]);
      while (this.buf.length >= 8 && this.buf.length >= 8 + (this.buf.readUInt32BE(4) & 0xffffff)) {
        const len = this.buf.readUInt32BE(4) & 0xffffff;
        const control = (this.buf[0]! & 0x80) !== 0;
        const body = this.buf.subarray(8, 8 + len);
        this.frames.push({
          control,
          type: control ? this.buf.readUInt16BE(2) : 0,
          id: control ? (len >= 4 ? body.readUInt32BE(0) & 0x7fffffff : 0) : this.buf.readUInt32BE(0) & 0x7fffffff,
          flags: this.buf[4]!,
          body: Buffer.from(body),
        });
        this.buf = this.buf.subarray(8 + len);
      }
    });
  }

  private block(headers: Record<string, string>): Promise<Buffer> {
    const pairs = Object.entries(headers);
    const parts = [Buffer.alloc(4)];
    parts[0]!.writeUInt32BE(pairs.length);
    for (const [k, v] of pairs) {
      for (const s of [k, v]) {
        const len = Buffer.alloc(4);
        len.writeUInt32BE(Buffer.byteLength(s));
        parts.push(len, Buffer.from(s));
      }
    }
    return new Promise((resolve) => {
      const out: Buffer[] = [];
      const on = (d: Buffer): void => void out.push(d);
      this.deflate.on('data', on);
      this.deflate.write(Buffer.concat(parts));
      this.deflate.flush(z.Z_SYNC_FLUSH, () => {
        this.deflate.off('data', on);
        resolve(Buffer.concat(out));
      });
    });
  }

  control(type: number, flags: number, body: Buffer): void {
    const head = Buffer.alloc(8);
    head.writeUInt16BE(0x8003, 0);
    head.writeUInt16BE(type, 2);
    head.writeUInt32BE((flags << 24) | body.length, 4);
    this.socket.write(Buffer.concat([head, body]));
  }

  async synStream(id: number, headers: Record<string, string>): Promise<void> {
    const head = Buffer.alloc(10);
    head.writeUInt32BE(id, 0);
    this.control(1, 0, Buffer.concat([head, await this.block(headers)]));
  }

  data(id: number, data: Buffer, fin = false): void {
    const head = Buffer.alloc(8);
    head.writeUInt32BE(id, 0);
    head.writeUInt32BE(((fin ? 1 : 0) << 24) | data.length, 4);
    this.socket.write(Buffer.concat([head, data]));
  }

  async until<T>(f: () => T | undefined): Promise<T> {
    for (let i = 0; i < 200; i++) {
      const v = f();
      if (v !== undefined) return v;
      await new Promise((r) => setTimeout(r, 10));
    }
    throw new Error('timed out');
  }

  inflateBlock(b: Buffer): Promise<Buffer> {
    return new Promise((resolve) => {
      const out: Buffer[] = [];
      const on = (d: Buffer): void => void out.push(d);
      this.inflate.on('data', on);
      this.inflate.write(b);
      this.inflate.flush(z.Z_SYNC_FLUSH, () => {
        this.inflate.off('data', on);
        resolve(Buffer.concat(out));
      });
    });
  }
}

async function spdyPair(): Promise<{ session: SpdySession; client: SpdyClient; close: () => void }> {
  const server = createServer();
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  const accepted = once(server, 'connection');
  const socket = connect((server.address() as AddressInfo).port, '127.0.0.1');
  const [serverSide] = (await accepted) as [Socket];
  const session = new SpdySession(serverSide);
  return { session, client: new SpdyClient(socket), close: () => (socket.destroy(), server.close()) };
}

describe('SPDY/3.1 sessions', () => {
  test('a client stream is answered with SYN_REPLY, its headers read, data goes both ways, FIN ends it', async () => {
    const { session, client, close } = await spdyPair();
    try {
      const got = once(session, 'stream') as Promise<[SpdyStream]>;
      await client.synStream(1, { streamtype: 'stdin', port: '80' });
      const [s] = await got;
      assert.equal(s.headers['streamtype'], 'stdin');
      assert.equal(s.headers['port'], '80');
      const reply = await client.until(() => client.frames.find((f) => f.control && f.type === 2));
      assert.equal(reply.id, 1);
      assert.equal((await client.inflateBlock(reply.body.subarray(4))).readUInt32BE(0), 0, 'the reply carries headers');
      const chunks: Buffer[] = [];
      s.on('data', (d: Buffer) => chunks.push(d));
      const ended = once(s, 'end');
      client.data(1, Buffer.from('hello '));
      client.data(1, Buffer.from('server'), true);
      await ended;
      assert.equal(Buffer.concat(chunks).toString(), 'hello server');
      s.end('hello client');
      const fin = await client.until(() => client.frames.find((f) => !f.control && f.id === 1 && (f.flags & 1) === 1));
      const data = client.frames.filter((f) => !f.control && f.id === 1).map((f) => f.body.toString()).join('');
      assert.equal(data, 'hello client');
      assert.ok(fin);
    } finally {
      close();
    }
  });

  test("the client's pings are echoed; a stream id reused is refused with RST_STREAM", async () => {
    const { session, client, close } = await spdyPair();
    try {
      const ping = Buffer.alloc(4);
      ping.writeUInt32BE(7);
      client.control(6, 0, ping);
      const pong = await client.until(() => client.frames.find((f) => f.control && f.type === 6));
      assert.equal(pong.body.readUInt32BE(0), 7);
      await client.synStream(3, { streamtype: 'error' });
      await once(session, 'stream');
      await client.synStream(3, { streamtype: 'error' });
      const rst = await client.until(() => client.frames.find((f) => f.control && f.type === 3));
      assert.equal(rst.id, 3);
    } finally {
      close();
    }
  });

  test('the session ends when the client goes, and its streams end with it', async () => {
    const { session, client, close } = await spdyPair();
    const got = once(session, 'stream') as Promise<[SpdyStream]>;
    await client.synStream(1, { streamtype: 'stdout' });
    const [s] = await got;
    s.resume();
    const closed = once(session, 'close');
    client.socket.end();
    await closed;
    assert.ok(session.isClosed);
    close();
  });
});

describe('the remote command protocol over WebSocket', () => {
  test('channel 0 is stdin (v5: 255 0 closes it), stdout goes out on 1, the status on 3, then a normal close', async () => {
    const wss = new WebSocketServer({ port: 0, host: '127.0.0.1', handleProtocols: () => 'v5.channel.k8s.io' });
    await once(wss, 'listening');
    try {
      const serverSide = once(wss, 'connection') as Promise<[WebSocket]>;
      const client = new WebSocket(`ws://127.0.0.1:${(wss.address() as AddressInfo).port}/`, ['v5.channel.k8s.io']);
      const received: Buffer[] = [];
      client.on('message', (d: Buffer) => received.push(d));
      const clientClosed = once(client, 'close') as Promise<[number]>;
      await once(client, 'open');
      const [ws] = await serverSide;
      const session = websocketSession(ws, 'v5.channel.k8s.io', { stdin: true, stdout: true, stderr: true, tty: false });
      const input: Buffer[] = [];
      session.stdin!.on('data', (d: Buffer) => input.push(d));
      const inputEnded = once(session.stdin!, 'end');
      client.send(Buffer.from([0, ...Buffer.from('typed')]));
      client.send(Buffer.from([255, 0]));
      await inputEnded;
      assert.equal(Buffer.concat(input).toString(), 'typed');
      await new Promise<void>((r) => session.stdout!.write('out', () => r()));
      await session.finish({ exitCode: 2 });
      const [code] = await clientClosed;
      assert.equal(code, 1000);
      assert.deepEqual(received[0], Buffer.from([1, ...Buffer.from('out')]));
      assert.equal(received[1]![0], 3);
      assert.equal((JSON.parse(received[1]!.subarray(1).toString()) as { reason: string }).reason, 'NonZeroExitCode');
    } finally {
      wss.close();
    }
  });
});
