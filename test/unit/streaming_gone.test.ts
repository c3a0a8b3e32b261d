import assert from 'node:assert/strict';
import { once } from 'node:events';
import { connect } from 'node:net';
import { describe, test } from 'node:test';

import { WebSocket } from 'ws';

import { notFound } from '../../pkg/errdefs/errors.js';
import { silentLogger } from '../../pkg/log/logger.js';
import { StreamingServer, type StreamingHandlers } from '../../pkg/streaming/server.js';

// Streaming URLs whose object went away between the CRI call that made the URL
// and the client's connection: a port-forward to a removed pod is a 404 before
// any upgrade; an exec into a removed container ends with the error on the
// session. Either way the server answers and goes on serving — a throw here
// used to end the runtime half.

const gone: StreamingHandlers = {
  exec: () => Promise.reject(notFound('container abc not found', { field: 'container_id' })),
  attach: () => Promise.reject(notFound('container abc not found', { field: 'container_id' })),
  portForward: () => {
    throw notFound('pod sandbox abc not found', { field: 'pod_sandbox_id' });
  },
};
/** The same, looking the container up before the upgrade as the runtime's handlers do. */
const goneChecked: StreamingHandlers = {
  ...gone,
  checkContainer: (id) => {
    throw notFound(`container ${id} not found`, { field: 'container_id' });
  },
};

/** The raw HTTP answer to a SPDY upgrade of `url`. */
async function spdyUpgrade(url: string, protocol: string): Promise<string> {
  const u = new URL(url);
  const s = connect(Number(u.port), u.hostname);
  await once(s, 'connect');
  s.write(`POST ${u.pathname} HTTP/1.1\r\nHost: ${u.host}\r\nConnection: Upgrade\r\nUpgrade: SPDY/3.1\r\nX-Stream-Protocol-Version: ${protocol}\r\n\r\n`);
  let text = '';
  s.on('data', (d: Buffer) => (text += d.toString('latin1')));
  await Promise.race([once(s, 'close'), new Promise((r) => setTimeout(r, 2000))]);
  s.destroy();
  return text;
}

describe('streaming URLs of objects that are gone', () => {
  test('a port-forward URL of a removed pod is a 404 (SPDY and WebSocket), and the server keeps serving', async () => {
    const server = new StreamingServer(gone, silentLogger);
    await server.listen('127.0.0.1', 0);
    try {
      const answer = await spdyUpgrade(server.url({ kind: 'portforward', req: { podSandboxId: 'abc', ports: [80] } }), 'portforward.k8s.io');
      assert.match(answer, /^HTTP\/1\.1 404 Not Found\r\n/);
      assert.match(answer, /pod sandbox abc not found/);

      const ws = new WebSocket(server.url({ kind: 'portforward', req: { podSandboxId: 'abc', ports: [80] } }).replace(/^http/, 'ws'), ['v4.channel.k8s.io']);
      const [, res] = (await once(ws, 'unexpected-response')) as [unknown, { statusCode: number }];
      assert.equal(res.statusCode, 404);
      ws.on('error', () => undefined);
      ws.terminate();

      // Still serving: an unknown token is still an answer.
      assert.match(await spdyUpgrade(`${server.url({ kind: 'exec', req: { containerId: 'x', cmd: ['true'], stdin: false, stdout: true, stderr: false, tty: false } }).replace(/\/[^/]*$/, '/nosuchtoken')}`, 'v4.channel.k8s.io'), /^HTTP\/1\.1 404/);
    } finally {
      await server.close();
    }
  });

  test('an exec or attach URL of a removed container is a 404 before the upgrade (SPDY and WebSocket)', async () => {
    const server = new StreamingServer(goneChecked, silentLogger);
    await server.listen('127.0.0.1', 0);
    try {
      const opts = { stdin: false, stdout: true, stderr: false, tty: false };
      const answer = await spdyUpgrade(server.url({ kind: 'exec', req: { containerId: 'abc', cmd: ['true'], ...opts } }), 'v4.channel.k8s.io');
      assert.match(answer, /^HTTP\/1\.1 404 Not Found\r\n/);
      assert.match(answer, /container abc not found/);
      const ws = new WebSocket(server.url({ kind: 'attach', req: { containerId: 'abc', ...opts } }).replace(/^http/, 'ws'), ['v5.channel.k8s.io']);
      const [, res] = (await once(ws, 'unexpected-response')) as [unknown, { statusCode: number }];
      assert.equal(res.statusCode, 404);
      ws.on('error', () => undefined);
      ws.terminate();
    } finally {
      await server.close();
    }
  });

  test('an exec URL of a container removed once the session started ends with the error on the session', async () => {
    const server = new StreamingServer(gone, silentLogger);
    await server.listen('127.0.0.1', 0);
    try {
      const url = server.url({ kind: 'exec', req: { containerId: 'abc', cmd: ['true'], stdin: false, stdout: true, stderr: false, tty: false } });
      const ws = new WebSocket(url.replace(/^http/, 'ws'), ['v5.channel.k8s.io']);
      const messages: Buffer[] = [];
      ws.on('message', (d: Buffer) => messages.push(d));
      const [code] = (await once(ws, 'close')) as [number];
      assert.equal(code, 1000);
      const status = messages.find((m) => m[0] === 3);
      assert.ok(status, 'no status on the error channel');
      assert.match(status.subarray(1).toString(), /container abc not found/);
    } finally {
      await server.close();
    }
  });

  test('stdin sent after the client closed it (v5) is dropped, not an error', async () => {
    const server = new StreamingServer(
      {
        ...gone,
        exec: async (_req, session) => {
          session.stdin?.resume();
          await new Promise((r) => setTimeout(r, 300));
          await session.finish({ exitCode: 0 });
        },
      },
      silentLogger,
    );
    await server.listen('127.0.0.1', 0);
    try {
      const url = server.url({ kind: 'exec', req: { containerId: 'abc', cmd: ['cat'], stdin: true, stdout: true, stderr: false, tty: false } });
      const ws = new WebSocket(url.replace(/^http/, 'ws'), ['v5.channel.k8s.io']);
      await once(ws, 'open');
      ws.send(Buffer.from([0, 0x61]));
      ws.send(Buffer.from([255, 0]));
      ws.send(Buffer.from([0, 0x62]));
      const [code] = (await once(ws, 'close')) as [number];
      assert.equal(code, 1000);
    } finally {
      await server.close();
    }
  });
});
