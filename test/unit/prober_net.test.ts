import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { readdirSync, readFileSync } from 'node:fs';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { createServer as createHttpServer, type IncomingHttpHeaders, type Server } from 'node:http';
import { createServer as createHttpsServer } from 'node:https';
import { createServer as createTcpServer, type AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';

import * as grpc from '@grpc/grpc-js';
import protobuf from 'protobufjs';

import { isCode } from '../../pkg/errdefs/errors.js';
import { silentLogger } from '../../pkg/log/logger.js';
import { combinedProber, netProber, type NetProber, type ProbeSpec, type ProbeTarget, probeWorkerScript } from '../../pkg/node/prober_net.js';
import { rejection } from '../lib/unit.js';

// The network probes through the real probe worker process, entered with an
// identity `enter` (so it runs in this namespace) against local servers: the
// HTTP status and redirect rules, headers, body limit, HTTPS without
// verification, tcp, the grpc health protocol, timeouts, and the worker's
// life (one process for many probes, requests failed when it dies, restarts).

const identity = (argv: string[]): string[] => argv;
const at = (timeoutMs = 2000): ProbeTarget => ({ containerId: 'c1', podIP: '127.0.0.1', timeoutMs });
const httpGet = (port: number, path: string, headers: Array<{ name: string; value: string }> = [], scheme: 'HTTP' | 'HTTPS' = 'HTTP'): ProbeSpec => ({ kind: 'httpGet', scheme, port, path, httpHeaders: headers });

async function listen(s: Server | ReturnType<typeof createTcpServer>): Promise<number> {
  await new Promise<void>((r) => s.listen(0, '127.0.0.1', r));
  return (s.address() as AddressInfo).port;
}

async function closedPort(): Promise<number> {
  const s = createTcpServer();
  const port = await listen(s);
  await new Promise<void>((r) => s.close(() => r()));
  return port;
}

/** The probe workers this process started, by their command lines in /proc. */
function workersOfThisProcess(): number[] {
  const out: number[] = [];
  for (const d of readdirSync('/proc')) {
    if (!/^\d+$/.test(d)) continue;
    try {
      const stat = readFileSync(`/proc/${d}/stat`, 'utf8');
      const ppid = Number(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[1]);
      if (ppid === process.pid && readFileSync(`/proc/${d}/cmdline`, 'utf8').includes(probeWorkerScript)) out.push(Number(d));
    } catch {
      // gone meanwhile
    }
  }
  return out;
}

describe('httpGet probes', () => {
  let prober: NetProber;
  let server: Server;
  let port: number;
  const seen: Array<{ url: string; headers: IncomingHttpHeaders }> = [];

  before(async () => {
    prober = netProber({ enter: identity, log: silentLogger });
    server = createHttpServer((req, res) => {
      seen.push({ url: req.url ?? '', headers: req.headers });
      const u = req.url ?? '';
      if (u === '/ok' || u.startsWith('/q?')) return void res.end('ok');
      if (u === '/no-content') return void res.writeHead(204).end();
      if (u === '/missing') return void res.writeHead(404).end('no such page');
      if (u === '/broken') return void res.writeHead(500).end();
      if (u === '/same-host') return void res.writeHead(302, { location: '/ok' }).end();
      if (u === '/other-host') return void res.writeHead(302, { location: `http://localhost:${port}/ok` }).end('moved away');
      if (u === '/loop') return void res.writeHead(302, { location: '/loop' }).end();
      if (u === '/not-modified') return void res.writeHead(304).end();
      if (u === '/big') return void res.end(Buffer.alloc(1024 * 1024, 'x'));
      if (u === '/hang') return; // never answers
      res.writeHead(418).end();
    });
    port = await listen(server);
  });
  after(async () => {
    await prober.close();
    server.closeAllConnections();
    server.close();
  });

  test('a 200 is success, with the body as the output, and kubelet headers: User-Agent kube-probe/<major.minor>, Accept */*', async () => {
    seen.length = 0;
    assert.deepEqual(await prober.run(httpGet(port, '/ok'), at()), { result: 'success', output: 'ok' });
    assert.equal(seen[0]?.headers['user-agent'], 'kube-probe/1.37');
    assert.equal(seen[0]?.headers.accept, '*/*');
    assert.equal(seen[0]?.headers.host, `127.0.0.1:${port}`);
    assert.equal(seen[0]?.headers.connection, 'close', 'kubelet disables keep-alive');
  });

  test('any 2xx is success; 4xx and 5xx are failures naming the status code', async () => {
    assert.equal((await prober.run(httpGet(port, '/no-content'), at())).result, 'success');
    assert.deepEqual(await prober.run(httpGet(port, '/missing'), at()), { result: 'failure', output: 'HTTP probe failed with statuscode: 404' });
    assert.deepEqual(await prober.run(httpGet(port, '/broken'), at()), { result: 'failure', output: 'HTTP probe failed with statuscode: 500' });
    assert.deepEqual(await prober.run(httpGet(port, '/teapot'), at()), { result: 'failure', output: 'HTTP probe failed with statuscode: 418' });
  });

  test('custom headers are sent; Host replaces the URL host; they override User-Agent and Accept, and an empty Accept drops it', async () => {
    seen.length = 0;
    const headers = [
      { name: 'X-Probe', value: 'one' },
      { name: 'x-probe', value: 'two' },
      { name: 'Host', value: 'app.example.test' },
      { name: 'User-Agent', value: 'mine/1' },
      { name: 'Accept', value: 'text/plain' },
    ];
    assert.equal((await prober.run(httpGet(port, '/ok', headers), at())).result, 'success');
    assert.equal(seen[0]?.headers.host, 'app.example.test');
    assert.equal(seen[0]?.headers['x-probe'], 'one, two');
    assert.equal(seen[0]?.headers['user-agent'], 'mine/1');
    assert.equal(seen[0]?.headers.accept, 'text/plain');
    seen.length = 0;
    await prober.run(httpGet(port, '/ok', [{ name: 'Accept', value: '' }]), at());
    assert.equal(seen[0]?.headers.accept, undefined);
  });

  test('the path keeps its query string', async () => {
    seen.length = 0;
    assert.equal((await prober.run(httpGet(port, '/q?ready=1&x=%20'), at())).result, 'success');
    assert.equal(seen[0]?.url, '/q?ready=1&x=%20');
  });

  test('a redirect to the same host is followed', async () => {
    seen.length = 0;
    assert.deepEqual(await prober.run(httpGet(port, '/same-host'), at()), { result: 'success', output: 'ok' });
    assert.deepEqual(
      seen.map((s) => s.url),
      ['/same-host', '/ok'],
    );
    assert.equal(seen[1]?.headers['user-agent'], 'kube-probe/1.37', 'the headers go with the redirect');
  });

  test('a redirect to another host is not followed: success with a warning and the body', async () => {
    seen.length = 0;
    const o = await prober.run(httpGet(port, '/other-host'), at());
    assert.deepEqual(o, { result: 'success', output: 'Probe terminated redirects, Response body: moved away', warning: true });
    assert.deepEqual(
      seen.map((s) => s.url),
      ['/other-host'],
    );
  });

  test('a 3xx that is not a redirect to follow is success with a warning', async () => {
    const o = await prober.run(httpGet(port, '/not-modified'), at());
    assert.equal(o.result, 'success');
    assert.equal(o.warning, true);
  });

  test('a redirect loop fails after 10 requests, as Go clients stop', async () => {
    seen.length = 0;
    const o = await prober.run(httpGet(port, '/loop'), at());
    assert.equal(o.result, 'failure');
    assert.match(o.output, /stopped after 10 redirects/);
    assert.equal(seen.length, 10);
  });

  test('only the first 10 KiB of a body are read', async () => {
    const o = await prober.run(httpGet(port, '/big'), at());
    assert.equal(o.result, 'success');
    assert.equal(o.output.length, 10 * 1024);
  });

  test('no answer within the timeout is a failure saying "timeout", within the timeout', async () => {
    const t0 = Date.now();
    const o = await prober.run(httpGet(port, '/hang'), at(300));
    const took = Date.now() - t0;
    assert.equal(o.result, 'failure');
    assert.equal(o.output, `timeout: Get "http://127.0.0.1:${port}/hang" did not complete within 300ms`);
    assert.ok(took >= 290 && took < 800, `took ${took} ms`);
  });

  test('a closed port fails with the connect error', async () => {
    const p = await closedPort();
    assert.deepEqual(await prober.run(httpGet(p, '/'), at()), { result: 'failure', output: `Get "http://127.0.0.1:${p}/": dial tcp 127.0.0.1:${p}: connect: connection refused` });
  });

  test('host in the probe is used instead of the pod IP', async () => {
    const spec: ProbeSpec = { kind: 'httpGet', scheme: 'HTTP', host: '127.0.0.1', port, path: '/ok', httpHeaders: [] };
    assert.equal((await prober.run(spec, { containerId: 'c1', podIP: '', timeoutMs: 2000 })).result, 'success');
  });

  test('HTTPS is probed without verifying the certificate', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'probe-tls-'));
    try {
      execFileSync('openssl', ['req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes', '-days', '1', '-subj', '/CN=not-the-pod', '-keyout', join(dir, 'key.pem'), '-out', join(dir, 'cert.pem')], { stdio: 'ignore' });
      const tls = createHttpsServer({ key: await readFile(join(dir, 'key.pem')), cert: await readFile(join(dir, 'cert.pem')) }, (_req, res) => res.end('secure'));
      const p = await listen(tls);
      try {
        assert.deepEqual(await prober.run(httpGet(p, '/', [], 'HTTPS'), at()), { result: 'success', output: 'secure' });
      } finally {
        tls.close();
      }
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });

  test('bad input is refused naming the field', async () => {
    const e = await rejection(prober.run(httpGet(0, '/'), at()));
    assert.ok(isCode(e, 'InvalidArgument'));
    assert.match((e as Error).message, /httpGet\.port must be a port number between 1 and 65535, got 0/);
    const h = await rejection(prober.run(httpGet(port, '/', [{ name: 'Bad Name', value: 'x' }]), at()));
    assert.match((h as Error).message, /httpGet\.httpHeaders\[0\]\.name must be an HTTP header name/);
    const ip = await rejection(prober.run(httpGet(port, '/'), { containerId: 'c1', podIP: '', timeoutMs: 1000 }));
    assert.match((ip as Error).message, /needs the pod's IP/);
    const ex = await rejection(prober.run({ kind: 'exec', command: ['true'] }, at()));
    assert.ok(isCode(ex, 'InvalidArgument'));
  });
});

describe('tcpSocket probes', () => {
  test('success when the port accepts a connection; failure with the connect error when it is closed', async () => {
    const prober = netProber({ enter: identity, log: silentLogger });
    const s = createTcpServer((c) => c.destroy());
    const port = await listen(s);
    try {
      assert.deepEqual(await prober.run({ kind: 'tcpSocket', port }, at()), { result: 'success', output: '' });
      const p = await closedPort();
      assert.deepEqual(await prober.run({ kind: 'tcpSocket', port: p }, at()), { result: 'failure', output: `dial tcp 127.0.0.1:${p}: connect: connection refused` });
    } finally {
      s.close();
      await prober.close();
    }
  });
});

// grpc.health.v1 as its .proto declares it, through protobufjs' reflection:
// an encoding independent of the worker's hand-written one.
const healthRoot = protobuf.Root.fromJSON({
  nested: {
    HealthCheckRequest: { fields: { service: { type: 'string', id: 1 } } },
    HealthCheckResponse: { fields: { status: { type: 'ServingStatus', id: 1 } }, nested: { ServingStatus: { values: { UNKNOWN: 0, SERVING: 1, NOT_SERVING: 2, SERVICE_UNKNOWN: 3 } } } },
  },
});
const HealthCheckRequest = healthRoot.lookupType('HealthCheckRequest');
const HealthCheckResponse = healthRoot.lookupType('HealthCheckResponse');

async function grpcServer(add: (s: grpc.Server) => void): Promise<{ port: number; server: grpc.Server }> {
  const server = new grpc.Server();
  add(server);
  const port = await new Promise<number>((resolve, reject) => server.bindAsync('127.0.0.1:0', grpc.ServerCredentials.createInsecure(), (e, p) => (e ? reject(e) : resolve(p))));
  return { port, server };
}

describe('grpc probes (grpc.health.v1.Health/Check)', () => {
  let prober: NetProber;
  let health: { port: number; server: grpc.Server };
  let other: { port: number; server: grpc.Server };
  const agents: string[] = [];

  before(async () => {
    prober = netProber({ enter: identity, log: silentLogger });
    const statuses: Record<string, number> = { '': 1, down: 2, slow: 1 };
    health = await grpcServer((s) =>
      s.addService(
        {
          Check: {
            path: '/grpc.health.v1.Health/Check',
            requestStream: false,
            responseStream: false,
            requestSerialize: (v: { service: string }) => Buffer.from(HealthCheckRequest.encode(v).finish()),
            requestDeserialize: (b: Buffer) => HealthCheckRequest.toObject(HealthCheckRequest.decode(b), { defaults: true }) as { service: string },
            responseSerialize: (v: { status: number }) => Buffer.from(HealthCheckResponse.encode(v).finish()),
            responseDeserialize: (b: Buffer) => HealthCheckResponse.toObject(HealthCheckResponse.decode(b)) as { status: number },
          },
        },
        {
          Check: (call: grpc.ServerUnaryCall<{ service: string }, { status: number }>, cb: grpc.sendUnaryData<{ status: number }>) => {
            agents.push(String(call.metadata.get('user-agent')[0] ?? ''));
            const status = statuses[call.request.service];
            if (status === undefined) return cb({ code: grpc.status.NOT_FOUND, details: 'unknown service' });
            if (call.request.service === 'slow') return void setTimeout(() => cb(null, { status }), 2000);
            cb(null, { status });
          },
        },
      ),
    );
    other = await grpcServer(() => {});
  });
  after(async () => {
    await prober.close();
    health.server.forceShutdown();
    other.server.forceShutdown();
  });

  test('SERVING is success, with the kube-probe user agent; loading grpc-js does not count against the first timeout (kubelet default 1 s)', async () => {
    assert.deepEqual(await prober.run({ kind: 'grpc', port: health.port }, at(1000)), { result: 'success', output: 'service healthy' });
    assert.match(agents[0] ?? '', /^kube-probe\/1\.37/);
  });

  test('NOT_SERVING for the named service is a failure naming the status', async () => {
    assert.deepEqual(await prober.run({ kind: 'grpc', port: health.port, service: 'down' }, at()), { result: 'failure', output: 'service unhealthy (responded with "NOT_SERVING")' });
  });

  test('an unknown service, a server without health, a closed port and a slow answer are failures that say which', async () => {
    const unknown = await prober.run({ kind: 'grpc', port: health.port, service: 'nope' }, at());
    assert.equal(unknown.result, 'failure');
    assert.match(unknown.output, /^error: health rpc probe failed: .*unknown service/);
    const none = await prober.run({ kind: 'grpc', port: other.port }, at());
    assert.equal(none.result, 'failure');
    assert.match(none.output, /^error: this server does not implement the grpc health protocol \(grpc\.health\.v1\.Health\)/);
    const p = await closedPort();
    const closed = await prober.run({ kind: 'grpc', port: p }, at());
    assert.equal(closed.result, 'failure');
    assert.match(closed.output, new RegExp(`^error: failed to connect service at "127\\.0\\.0\\.1:${p}"`));
    const slow = await prober.run({ kind: 'grpc', port: health.port, service: 'slow' }, at(300));
    assert.deepEqual(slow, { result: 'failure', output: 'timeout: health rpc did not complete within 300ms' });
  });
});

describe('the probe worker process', () => {
  test('many probes in parallel share one worker process', async () => {
    const prober = netProber({ enter: identity, log: silentLogger });
    const server = createHttpServer((_req, res) => setTimeout(() => res.end('ok'), 50));
    const port = await listen(server);
    try {
      const outcomes = await Promise.all(Array.from({ length: 100 }, () => prober.run(httpGet(port, '/'), at(5000))));
      assert.ok(outcomes.every((o) => o.result === 'success'));
      assert.deepEqual(workersOfThisProcess(), [prober.workerPid]);
    } finally {
      await prober.close();
      server.close();
    }
    assert.deepEqual(workersOfThisProcess(), [], 'close() leaves no worker');
  });

  test('a worker that dies fails the probes it held at once, and the next probe starts a new one', async () => {
    const prober = netProber({ enter: identity, log: silentLogger });
    const hang = createHttpServer(() => {});
    const ok = createHttpServer((_req, res) => res.end('ok'));
    const [hangPort, okPort] = [await listen(hang), await listen(ok)];
    try {
      assert.equal((await prober.run(httpGet(okPort, '/'), at())).result, 'success');
      const first = prober.workerPid!;
      const held = prober.run(httpGet(hangPort, '/'), at(10000));
      await new Promise((r) => setTimeout(r, 100));
      const t0 = Date.now();
      process.kill(first, 'SIGKILL');
      const e = await rejection(held);
      assert.ok(isCode(e, 'Unavailable'), String(e));
      assert.match((e as Error).message, /the probe worker was killed by SIGKILL/);
      assert.ok(Date.now() - t0 < 2000, 'the held probe waited for its timeout');
      assert.deepEqual(await prober.run(httpGet(okPort, '/'), at()), { result: 'success', output: 'ok' });
      assert.notEqual(prober.workerPid, first);
    } finally {
      await prober.close();
      hang.closeAllConnections();
      hang.close();
      ok.close();
    }
  });

  test('a worker that cannot start fails the probe with its error, then backs off instead of respawning per probe', async () => {
    const prober = netProber({ enter: () => ['/bin/sh', '-c', 'echo "nsenter: cannot open /proc/1/ns/user: Permission denied" >&2; exit 1'], log: silentLogger });
    try {
      const e = await rejection(prober.run({ kind: 'tcpSocket', port: 1 }, at()));
      assert.ok(isCode(e, 'Unavailable'));
      assert.match((e as Error).message, /exited with code 1: nsenter: cannot open/);
      const again = await rejection(prober.run({ kind: 'tcpSocket', port: 1 }, at()));
      assert.match((again as Error).message, /the probe worker is restarting \(in \d+ ms\) after: exited with code 1/);
    } finally {
      await prober.close();
    }
  });

  test('after close, probes are refused', async () => {
    const prober = netProber({ enter: identity, log: silentLogger });
    await prober.close();
    assert.ok(isCode(await rejection(prober.run({ kind: 'tcpSocket', port: 1 }, at())), 'Unavailable'));
  });
});

test('combinedProber routes exec probes to the exec prober and the others to the network prober', async () => {
  const calls: string[] = [];
  const fake = (name: string) => ({
    run: async (p: ProbeSpec) => {
      calls.push(`${name}:${p.kind}`);
      return { result: 'success' as const, output: name };
    },
    close: async () => void calls.push(`${name}:close`),
  });
  const c = combinedProber({ exec: fake('exec'), net: fake('net') });
  await c.run({ kind: 'exec', command: ['true'] }, at());
  await c.run({ kind: 'tcpSocket', port: 80 }, at());
  await c.run({ kind: 'grpc', port: 80 }, at());
  await c.close?.();
  assert.deepEqual(calls, ['exec:exec', 'net:tcpSocket', 'net:grpc', 'exec:close', 'net:close']);
});
