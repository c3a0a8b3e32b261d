import assert from 'node:assert/strict';
import { once } from 'node:events';
import type { AddressInfo } from 'node:net';
import { describe, test } from 'node:test';

import { WebSocket, WebSocketServer } from 'ws';

import { stdinBuffer, websocketSession } from '../../pkg/streaming/websocket.js';

// WebSocket exec stdin under flow control (issue 13, deliverable 5): while
// nobody takes the command's stdin, the server stops reading the socket
// (TCP then stops the client) and holds no more than its small buffer; once
// stdin is read again, everything the client sent arrives, in order.

describe('WebSocket remote command flow control', () => {
  test('stdin nobody reads pauses the socket with at most its buffer held; reading it resumes, nothing lost', async () => {
    const wss = new WebSocketServer({ port: 0, host: '127.0.0.1', handleProtocols: () => 'v5.channel.k8s.io' });
    await once(wss, 'listening');
    try {
      const serverSide = once(wss, 'connection') as Promise<[WebSocket]>;
      const client = new WebSocket(`ws://127.0.0.1:${(wss.address() as AddressInfo).port}/`, ['v5.channel.k8s.io']);
      await once(client, 'open');
      const [ws] = await serverSide;
      const session = websocketSession(ws, 'v5.channel.k8s.io', { stdin: true, stdout: true, stderr: false, tty: false });
      const stdin = session.stdin!;
      // 16 MiB offered in 32 KiB messages, numbered so order can be checked.
      const total = 512;
      for (let i = 0; i < total; i++) {
        const m = Buffer.alloc(1 + 32 * 1024, i & 0xff);
        m[0] = 0;
        client.send(m);
      }
      for (let i = 0; i < 200 && !ws.isPaused; i++) await new Promise((r) => setTimeout(r, 10));
      assert.ok(ws.isPaused, 'the socket was not paused');
      await new Promise((r) => setTimeout(r, 200));
      const held = stdin.readableLength + (stdin as typeof stdin & { writableLength: number }).writableLength;
      assert.ok(held <= 2 * stdinBuffer + 64 * 1024, `${held} bytes held for a stdin nobody reads`);
      assert.ok(client.bufferedAmount > 0, 'the client was not held back');
      let got = 0;
      let inOrder = true;
      stdin.on('data', (d: Buffer) => {
        for (let k = 0; k < d.length; k += 4096) if (d[k] !== (Math.floor((got + k) / (32 * 1024)) & 0xff)) inOrder = false;
        got += d.length;
      });
      for (let i = 0; i < 1000 && got < total * 32 * 1024; i++) await new Promise((r) => setTimeout(r, 10));
      assert.equal(got, total * 32 * 1024);
      assert.ok(inOrder, 'stdin came out of order');
      assert.ok(!ws.isPaused);
      client.close();
    } finally {
      wss.close();
    }
  });
});
