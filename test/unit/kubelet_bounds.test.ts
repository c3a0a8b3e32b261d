import assert from 'node:assert/strict';
import { request } from 'node:https';
import { join } from 'node:path';
import { describe, test } from 'node:test';
import { connect, type TLSSocket } from 'node:tls';

import type { CriClients } from '../../proto/client.js';
import { silentLogger } from '../../pkg/log/logger.js';
import { type AccessAttributes, cachedClusterAuth, type ClusterAuth } from '../../pkg/node/kubelet_auth.js';
import { type KubeletServer, type KubeletServerOptions, serveKubeletApi } from '../../pkg/node/kubelet_server.js';
import { tempFolders } from '../lib/unit.js';

// The kubelet API's bounds (issue 13, deliverable 5): a cap on connections,
// a cache of rejected tokens (one TokenReview per unknown token, not one per
// request), and /run with a timeout and cancelled when its client leaves.

const folders = tempFolders('kubelet-bounds-');

type Cb = (err: (Error & { code?: number }) | null, res?: unknown) => void;

/** A CRI with one pod "shop/web" and one container "app"; ExecSync as the test says. */
function fakeCri(execSync: (req: Record<string, unknown>, opts: { deadline?: number }, cb: Cb) => { cancel(): void }): CriClients {
  const runtime = {
    ListPodSandbox: (_req: object, cb: Cb) => cb(null, { items: [{ id: 'pod-1', state: 'SANDBOX_READY', createdAt: '1', labels: {}, metadata: { name: 'web', namespace: 'shop', uid: 'u1', attempt: 0 } }] }),
    ListContainers: (_req: object, cb: Cb) => cb(null, { containers: [{ id: 'ctr-1', podSandboxId: 'pod-1', state: 'CONTAINER_RUNNING', createdAt: '1', labels: {}, metadata: { name: 'app', attempt: 0 } }] }),
    ExecSync: execSync,
  };
  return { runtime, image: {}, close: () => undefined } as unknown as CriClients;
}

async function serve(o: Partial<KubeletServerOptions>): Promise<KubeletServer> {
  const dir = await folders.fresh('server');
  return serveKubeletApi({
    host: '127.0.0.1',
    port: 0,
    tls: { pkiDir: join(dir, 'pki') },
    // Anonymous, no control plane: AlwaysAllow, so these tests reach the handlers.
    anonymous: true,
    nodeName: 'node-a',
    cri: fakeCri((_r, _o, cb) => (cb(Object.assign(new Error('unavailable'), { code: 14 })), { cancel: () => undefined })),
    pods: () => [],
    metrics: { node: async () => ({ contentType: 'text/plain', body: '' }), cadvisor: async () => ({ contentType: 'text/plain', body: '' }), resource: async () => ({ contentType: 'text/plain', body: '' }) },
    log: silentLogger,
    ...o,
  });
}

/** A TLS connection that completes its handshake; rejects if the server closes it first. */
function tlsConnection(port: number): Promise<TLSSocket> {
  return new Promise((resolve, reject) => {
    const s = connect({ host: '127.0.0.1', port, rejectUnauthorized: false }, () => resolve(s));
    s.once('error', reject);
    s.once('close', () => reject(new Error('closed before the handshake')));
  });
}

function post(port: number, path: string): { answer: Promise<{ status: number; body: string }>; abort: () => void } {
  const req = request({ host: '127.0.0.1', port, path, method: 'POST', rejectUnauthorized: false });
  const answer = new Promise<{ status: number; body: string }>((resolve, reject) => {
    req.on('response', (res) => {
      let body = '';
      res.on('data', (d: Buffer) => (body += d.toString()));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, body }));
    });
    req.on('error', reject);
  });
  req.end();
  return { answer, abort: () => req.destroy() };
}

describe('kubelet API connection cap', () => {
  test('connections over maxConnections are closed as they come; one freed lets the next in', async () => {
    const server = await serve({ maxConnections: 3 });
    const held: TLSSocket[] = [];
    try {
      for (let i = 0; i < 3; i++) held.push(await tlsConnection(server.port));
      await assert.rejects(tlsConnection(server.port), 'a connection over the cap was served');
      held.shift()!.destroy();
      await new Promise((r) => setTimeout(r, 100));
      held.push(await tlsConnection(server.port));
    } finally {
      for (const s of held) s.destroy();
      await server.close();
    }
  });
});

describe('TokenReview cache', () => {
  class Counting implements ClusterAuth {
    tokens: string[] = [];
    async tokenReview(token: string): ReturnType<ClusterAuth['tokenReview']> {
      this.tokens.push(token);
      await new Promise((r) => setTimeout(r, 20));
      return token === 'good' ? { authenticated: true, user: { username: 'bob', groups: [] } } : { authenticated: false, error: 'token not found' };
    }
    async subjectAccessReview(_a: AccessAttributes): ReturnType<ClusterAuth['subjectAccessReview']> {
      return { allowed: true };
    }
  }

  test('an unknown token costs one TokenReview, however many requests carry it at once or after, until its TTL', async () => {
    let now = 0;
    const inner = new Counting();
    const c = cachedClusterAuth(inner, { now: () => now });
    const answers = await Promise.all(Array.from({ length: 50 }, () => c.tokenReview('made-up')));
    assert.ok(answers.every((a) => !a.authenticated));
    assert.equal(inner.tokens.length, 1, 'concurrent requests with one token were each reviewed');
    for (let i = 0; i < 20; i++) await c.tokenReview('made-up');
    now = 119000;
    await c.tokenReview('made-up');
    assert.equal(inner.tokens.length, 1, 'a rejected token was reviewed again within its TTL');
    now = 121000;
    await c.tokenReview('made-up');
    assert.equal(inner.tokens.length, 2, 'a rejected token was kept past its TTL');
  });

  test('a flood of made-up tokens does not push out an accepted one', async () => {
    const inner = new Counting();
    const c = cachedClusterAuth(inner, { maxEntries: 100 });
    assert.ok((await c.tokenReview('good')).authenticated);
    for (let i = 0; i < 1000; i++) await c.tokenReview(`junk-${i}`);
    const before = inner.tokens.length;
    assert.ok((await c.tokenReview('good')).authenticated);
    assert.equal(inner.tokens.length, before, 'the accepted token was reviewed again');
  });

  test('through the server: 20 requests with one unknown bearer token are 401 after one TokenReview', async () => {
    const inner = new Counting();
    const server = await serve({ anonymous: false, auth: cachedClusterAuth(inner) });
    try {
      for (let i = 0; i < 20; i++) {
        const status = await new Promise<number>((resolve, reject) => {
          const req = request({ host: '127.0.0.1', port: server.port, path: '/pods', headers: { authorization: 'Bearer nobody-has-this' }, rejectUnauthorized: false }, (res) => {
            res.resume();
            resolve(res.statusCode ?? 0);
          });
          req.on('error', reject);
          req.end();
        });
        assert.equal(status, 401);
      }
      assert.equal(inner.tokens.length, 1);
    } finally {
      await server.close();
    }
  });
});

describe('/run', () => {
  test('a client that leaves cancels the ExecSync call', async () => {
    let called!: () => void;
    const execCalled = new Promise<void>((r) => (called = r));
    let cancelled = false;
    const server = await serve({
      cri: fakeCri((_req, _opts, cb) => {
        called();
        return {
          cancel: () => {
            cancelled = true;
            cb(Object.assign(new Error('1 CANCELLED: Cancelled on client'), { code: 1 }));
          },
        };
      }),
    });
    try {
      const r = post(server.port, '/run/shop/web/app?cmd=sleep%20100');
      r.answer.catch(() => undefined);
      await execCalled;
      assert.equal(cancelled, false);
      r.abort();
      for (let i = 0; i < 100 && !cancelled; i++) await new Promise((res) => setTimeout(res, 10));
      assert.ok(cancelled, 'the ExecSync call outlived its client');
    } finally {
      await server.close();
    }
  });

  test('the command has a timeout: ExecSync gets it, and a deadline a little past it; timed out is a 500 that says so', async () => {
    let seen: { req: Record<string, unknown>; deadline: number | undefined; at: number } | undefined;
    const server = await serve({
      runTimeoutMs: 3000,
      cri: fakeCri((req, opts, cb) => {
        seen = { req, deadline: opts.deadline, at: Date.now() };
        setTimeout(() => cb(Object.assign(new Error('4 DEADLINE_EXCEEDED: command timed out after 3 s'), { code: 4 })), 10);
        return { cancel: () => undefined };
      }),
    });
    try {
      const got = await post(server.port, '/run/shop/web/app?cmd=sleep%20100').answer;
      assert.equal(seen?.req['timeout'], 3);
      assert.deepEqual(seen?.req['cmd'], ['sleep', '100']);
      const slack = (seen!.deadline ?? Infinity) - seen!.at;
      assert.ok(slack > 3000 && slack < 60000, `the call's deadline is ${slack} ms away`);
      assert.equal(got.status, 500);
      assert.match(got.body, /did not finish within 3 s/);
    } finally {
      await server.close();
    }
  });

  test('a command that finishes answers its output', async () => {
    const server = await serve({
      cri: fakeCri((req, _opts, cb) => {
        cb(null, { stdout: Buffer.from(`ran ${(req['cmd'] as string[]).join(' ')}\n`), stderr: Buffer.alloc(0), exitCode: 0 });
        return { cancel: () => undefined };
      }),
    });
    try {
      const got = await post(server.port, '/run/shop/web/app?cmd=echo%20hi').answer;
      assert.equal(got.status, 200);
      assert.equal(got.body, 'ran echo hi\n');
    } finally {
      await server.close();
    }
  });
});

