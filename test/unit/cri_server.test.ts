import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { once } from 'node:events';
import { chmod, lstat, mkdir, mkdtemp, readFile, rm, stat, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, afterEach, before, describe, test } from 'node:test';

import * as grpc from '@grpc/grpc-js';

import { isCode, isDomainError } from '../../pkg/errdefs/errors.js';
import type { CriContext, RuntimeHealth } from '../../pkg/cri/context.js';
import { CriServer } from '../../pkg/cri/server.js';
import { silentLogger } from '../../pkg/log/logger.js';
import { criClients, type CriClients } from '../../proto/client.js';
import { loadCri } from '../../proto/cri.js';
import type { ImageFsInfoResponse__Output } from '../../proto/generated/runtime/v1/ImageFsInfoResponse.js';
import type { RuntimeConfigResponse__Output } from '../../proto/generated/runtime/v1/RuntimeConfigResponse.js';
import type { StatusResponse__Output } from '../../proto/generated/runtime/v1/StatusResponse.js';
import type { VersionResponse__Output } from '../../proto/generated/runtime/v1/VersionResponse.js';
import type { ContainerEventResponse__Output } from '../../proto/generated/runtime/v1/ContainerEventResponse.js';
import { eventually } from '../lib/agent.js';
import type { ImageService } from '../../pkg/image/image_service.js';
import type { PodRuntime } from '../../pkg/cri/pods.js';
import type { ContainerRuntime } from '../../pkg/cri/containers.js';
import { rejection } from '../lib/unit.js';
import type { ContainerEvent } from '../../pkg/cri/container_events.js';
import { EventBus } from '../../pkg/cri/event_bus.js';

// A real CriServer on a unix socket in a temp dir, driven through the same
// client the node half uses; the context behind it is a fake.

const uid = process.getuid?.() ?? 0;

interface FakeContext extends CriContext {
  healthNow: RuntimeHealth;
  isReady: boolean;
}

function fakeContext(dir: string): FakeContext {
  const c: FakeContext = {
    log: silentLogger,
    version: '9.8.7-test',
    cgroupDriver: 'CGROUPFS',
    healthNow: {
      runtime: { ready: true, reason: '', message: '' },
      network: { ready: true, reason: '', message: '' },
    },
    isReady: true,
    health: async () => c.healthNow,
    verboseInfo: async () => ({ config: '{"cgroupDriver":"cgroupfs"}' }),
    ready: () => c.isReady,
    dirs: { images: join(dir, 'images'), snapshots: join(dir, 'snapshots') },
    features: { userNamespaces: true, recursiveReadOnlyMounts: false },
    streaming: { url: () => 'http://127.0.0.1:1/exec/fake' },
    // The image RPCs have tests of their own; these tests never reach them.
    images: {} as ImageService,
    pods: {} as PodRuntime,
    containers: {} as ContainerRuntime,
    events: new EventBus<ContainerEvent>(),
    snapshotter: 'overlayfs',
  };
  return c;
}

type Callback<T> = (err: grpc.ServiceError | null, res?: T) => void;

function call<T>(invoke: (cb: Callback<T>) => unknown): Promise<T> {
  return new Promise<T>((resolve, reject) => {
    invoke((err, res) => (err ? reject(err) : res === undefined ? reject(new Error('empty response')) : resolve(res)));
  });
}

async function callError<T>(invoke: (cb: Callback<T>) => unknown): Promise<grpc.ServiceError> {
  try {
    await call(invoke);
  } catch (e: unknown) {
    if (e instanceof Error && 'code' in e) return e as grpc.ServiceError;
    throw e;
  }
  assert.fail('the call succeeded');
}

const deadline = (): grpc.CallOptions => ({ deadline: Date.now() + 5000 });

let root: string;
let n = 0;
const toStop: CriServer[] = [];
const toClose: CriClients[] = [];

before(async () => {
  root = await mkdtemp(join(tmpdir(), 'usernode-cri-'));
});

afterEach(async () => {
  for (const c of toClose.splice(0)) c.close();
  for (const s of toStop.splice(0)) await s.stop(100);
});

after(async () => {
  await rm(root, { recursive: true, force: true });
});

/** A fresh folder (not yet created) and socket path for one test. */
function place(): { dir: string; socket: string } {
  const dir = join(root, `s${++n}`);
  return { dir, socket: join(dir, 'cri.sock') };
}

async function startServer(over: { socket?: string; ctx?: FakeContext } = {}): Promise<{ server: CriServer; ctx: FakeContext; socket: string; clients: CriClients }> {
  const p = place();
  const socket = over.socket ?? p.socket;
  const ctx = over.ctx ?? fakeContext(p.dir);
  const server = new CriServer({ socketPath: socket, ctx, uid });
  await server.start();
  toStop.push(server);
  const clients = criClients(socket);
  toClose.push(clients);
  return { server, ctx, socket, clients };
}

describe('CriServer answers the built RPCs', () => {
  test('Version names usernode and CRI v1', async () => {
    const { clients } = await startServer();
    const v = await call<VersionResponse__Output>((cb) => clients.runtime.Version({}, deadline(), cb));
    assert.equal(v.runtimeName, 'usernode');
    assert.equal(v.runtimeApiVersion, 'v1');
    assert.equal(v.runtimeVersion, '9.8.7-test');
    assert.equal(v.version, '0.1.0');
  });

  test('Status reports ready conditions, with info only when verbose', async () => {
    const { clients } = await startServer();
    const s = await call<StatusResponse__Output>((cb) => clients.runtime.Status({}, deadline(), cb));
    const conds = s.status?.conditions ?? [];
    assert.deepEqual(
      conds.map((c) => [c.type, c.status, c.reason, c.message]),
      [
        ['RuntimeReady', true, '', ''],
        ['NetworkReady', true, '', ''],
      ],
    );
    assert.deepEqual(s.info, {});
    assert.equal(s.runtimeHandlers[0]?.features?.userNamespaces, true);

    const verbose = await call<StatusResponse__Output>((cb) => clients.runtime.Status({ verbose: true }, deadline(), cb));
    assert.deepEqual(verbose.info, { config: '{"cgroupDriver":"cgroupfs"}' });
  });

  test('Status reports a not-ready runtime and network with reason and message', async () => {
    const { clients, ctx } = await startServer();
    ctx.healthNow = {
      runtime: { ready: false, reason: 'RuncMissing', message: 'runc not found' },
      network: { ready: false, reason: 'NetworkPluginNotReady', message: 'no CNI conflist' },
    };
    const s = await call<StatusResponse__Output>((cb) => clients.runtime.Status({}, deadline(), cb));
    assert.deepEqual(
      (s.status?.conditions ?? []).map((c) => [c.type, c.status, c.reason, c.message]),
      [
        ['RuntimeReady', false, 'RuncMissing', 'runc not found'],
        ['NetworkReady', false, 'NetworkPluginNotReady', 'no CNI conflist'],
      ],
    );
    // Health is worked out on each call.
    ctx.healthNow = { ...ctx.healthNow, network: { ready: true, reason: 'Stale', message: 'stale' } };
    const again = await call<StatusResponse__Output>((cb) => clients.runtime.Status({}, deadline(), cb));
    const net = again.status?.conditions.find((c) => c.type === 'NetworkReady');
    assert.deepEqual([net?.status, net?.reason, net?.message], [true, '', '']);
  });

  test('RuntimeConfig says CGROUPFS', async () => {
    const { clients } = await startServer();
    const r = await call<RuntimeConfigResponse__Output>((cb) => clients.runtime.RuntimeConfig({}, deadline(), cb));
    assert.equal(r.linux?.cgroupDriver, 'CGROUPFS');
  });

  test('ImageFsInfo reports usedBytes growing after a 1 MiB file lands in the images folder', async () => {
    const { clients, ctx } = await startServer();
    await mkdir(ctx.dirs.images, { recursive: true });
    await mkdir(ctx.dirs.snapshots, { recursive: true });
    const info = () => call<ImageFsInfoResponse__Output>((cb) => clients.image.ImageFsInfo({}, deadline(), cb));
    const before = await info();
    const img = before.imageFilesystems[0];
    assert.equal(img?.fsId?.mountpoint, ctx.dirs.images);
    assert.equal(before.containerFilesystems[0]?.fsId?.mountpoint, ctx.dirs.snapshots);
    assert.match(img?.timestamp ?? '', /^\d{19}$/, 'timestamp is nanoseconds since the epoch');

    await writeFile(join(ctx.dirs.images, 'blob'), randomBytes(1024 * 1024));
    const afterWrite = await info();
    const used = (r: ImageFsInfoResponse__Output): bigint => BigInt(r.imageFilesystems[0]?.usedBytes?.value ?? '0');
    const inodes = (r: ImageFsInfoResponse__Output): bigint => BigInt(r.imageFilesystems[0]?.inodesUsed?.value ?? '0');
    assert.ok(used(afterWrite) - used(before) >= 1024n * 1024n, `usedBytes ${used(before)} -> ${used(afterWrite)}`);
    assert.equal(inodes(afterWrite) - inodes(before), 1n);
    // The snapshots folder did not change.
    assert.equal(afterWrite.containerFilesystems[0]?.usedBytes?.value, before.containerFilesystems[0]?.usedBytes?.value);
  });

  test('the observer sees each finished call with its gRPC code', async () => {
    const p = place();
    const seen: Array<[string, string, number]> = [];
    const server = new CriServer({
      socketPath: p.socket,
      ctx: fakeContext(p.dir),
      uid,
      observe: (service, method, code, seconds) => {
        assert.ok(seconds >= 0);
        seen.push([service, method, code]);
      },
    });
    await server.start();
    toStop.push(server);
    const clients = criClients(p.socket);
    toClose.push(clients);
    await call((cb) => clients.runtime.Version({}, deadline(), cb));
    await callError((cb) => clients.runtime.CheckpointContainer({}, deadline(), cb));
    assert.deepEqual(seen, [
      ['RuntimeService', 'Version', grpc.status.OK],
      ['RuntimeService', 'CheckpointContainer', grpc.status.UNIMPLEMENTED],
    ]);
  });
});

describe('CriServer errors', () => {
  test('an unbuilt RPC is UNIMPLEMENTED and names the RPC', async () => {
    const { clients } = await startServer();
    const run = await callError((cb) => clients.runtime.CheckpointContainer({}, deadline(), cb));
    assert.equal(run.code, grpc.status.UNIMPLEMENTED);
    assert.match(run.details, /RuntimeService\.CheckpointContainer/);
    const list = await callError((cb) => clients.runtime.CheckpointContainer({}, deadline(), cb));
    assert.equal(list.code, grpc.status.UNIMPLEMENTED);
    assert.match(list.details, /RuntimeService\.CheckpointContainer/);
  });

  test('an unbuilt server-streaming RPC (StreamPodSandboxes) ends with UNIMPLEMENTED', async () => {
    const { clients } = await startServer();
    const stream = clients.runtime.StreamPodSandboxes({}, deadline());
    const messages: unknown[] = [];
    stream.on('data', (m: unknown) => messages.push(m));
    const [err] = (await once(stream, 'error')) as [grpc.ServiceError];
    assert.equal(err.code, grpc.status.UNIMPLEMENTED);
    assert.match(err.details, /RuntimeService\.StreamPodSandboxes/);
    assert.deepEqual(messages, []);
  });

  test('request bytes that do not decode give INVALID_ARGUMENT, and the server carries on', async () => {
    const { clients, socket } = await startServer();
    // Field 536870911 with wire type 7, which protobuf does not have.
    const garbage = Buffer.from([0xff, 0xff, 0xff, 0xff, 0x0f]);
    const versionDef = loadCri().runtime.v1.RuntimeService.service.Version;
    assert.throws(() => versionDef.requestDeserialize(garbage), 'these bytes must really fail to decode');

    const raw = new grpc.Client(`unix://${socket}`, grpc.credentials.createInsecure());
    try {
      const err = await callError<Buffer>((cb) =>
        raw.makeUnaryRequest('/runtime.v1.RuntimeService/Version', (b: Buffer) => b, (b: Buffer) => b, garbage, deadline(), cb),
      );
      assert.equal(err.code, grpc.status.INVALID_ARGUMENT);
      assert.match(err.details, /malformed VersionRequest/);

      // An unbuilt RPC with bad bytes is still a bad request first.
      const err2 = await callError<Buffer>((cb) =>
        raw.makeUnaryRequest('/runtime.v1.RuntimeService/RunPodSandbox', (b: Buffer) => b, (b: Buffer) => b, garbage, deadline(), cb),
      );
      assert.equal(err2.code, grpc.status.INVALID_ARGUMENT);
    } finally {
      raw.close();
    }
    const v = await call<VersionResponse__Output>((cb) => clients.runtime.Version({}, deadline(), cb));
    assert.equal(v.runtimeName, 'usernode');
  });

  test('while the runtime is not ready, ImageFsInfo is UNAVAILABLE but Version and Status answer', async () => {
    const { clients, ctx } = await startServer();
    ctx.isReady = false;
    const err = await callError((cb) => clients.image.ImageFsInfo({}, deadline(), cb));
    assert.equal(err.code, grpc.status.UNAVAILABLE);
    assert.match(err.details, /not ready/);
    const rc = await callError((cb) => clients.runtime.RuntimeConfig({}, deadline(), cb));
    assert.equal(rc.code, grpc.status.UNAVAILABLE);
    const v = await call<VersionResponse__Output>((cb) => clients.runtime.Version({}, deadline(), cb));
    assert.equal(v.runtimeName, 'usernode');
    await call((cb) => clients.runtime.Status({}, deadline(), cb));

    ctx.isReady = true;
    await call((cb) => clients.runtime.RuntimeConfig({}, deadline(), cb));
  });
});

describe('CriServer socket', () => {
  test('the socket is 0600 and its folder 0700, even when the folder existed open', async () => {
    const p = place();
    await mkdir(p.dir, { mode: 0o755 });
    await chmod(p.dir, 0o755);
    await startServer({ socket: p.socket, ctx: fakeContext(p.dir) });
    const s = await lstat(p.socket);
    assert.ok(s.isSocket());
    assert.equal(s.mode & 0o777, 0o600);
    assert.equal((await stat(p.dir)).mode & 0o777, 0o700);
  });

  test('a folder that does not exist yet is made 0700', async () => {
    const p = place();
    const socket = join(p.dir, 'deeper', 'cri.sock');
    await startServer({ socket, ctx: fakeContext(p.dir) });
    assert.equal((await stat(join(p.dir, 'deeper'))).mode & 0o777, 0o700);
    assert.equal((await lstat(socket)).mode & 0o777, 0o600);
  });

  test('a regular file at the socket path is FailedPrecondition naming the path, and left alone', async () => {
    const p = place();
    await mkdir(p.dir, { recursive: true });
    await writeFile(p.socket, 'precious\n');
    const server = new CriServer({ socketPath: p.socket, ctx: fakeContext(p.dir), uid });
    const e = await rejection(server.start());
    assert.ok(isDomainError(e), String(e));
    assert.equal(e.code, 'FailedPrecondition');
    assert.ok(e.message.includes(p.socket), e.message);
    assert.equal(await readFile(p.socket, 'utf8'), 'precious\n');
    assert.ok((await lstat(p.socket)).isFile());
  });

  test('a second server on a live socket is AlreadyExists and the first keeps answering', async () => {
    const { socket, clients } = await startServer();
    const second = new CriServer({ socketPath: socket, ctx: fakeContext(root), uid });
    const e = await rejection(second.start());
    assert.ok(isCode(e, 'AlreadyExists'), String(e));
    assert.ok(e instanceof Error && e.message.includes(socket));
    const v = await call<VersionResponse__Output>((cb) => clients.runtime.Version({}, deadline(), cb));
    assert.equal(v.runtimeName, 'usernode');
  });

  test('a stale socket left by a killed process is replaced', async () => {
    const p = place();
    await mkdir(p.dir, { recursive: true, mode: 0o700 });
    const child = spawn(
      process.execPath,
      ['-e', `require('net').createServer().listen(${JSON.stringify(p.socket)}, () => process.stdout.write('up\\n'))`],
      { stdio: ['ignore', 'pipe', 'inherit'] },
    );
    try {
      await once(child.stdout, 'data');
    } finally {
      child.kill('SIGKILL');
    }
    await once(child, 'exit');
    assert.ok((await lstat(p.socket)).isSocket(), 'the killed process left its socket behind');

    const { clients } = await startServer({ socket: p.socket, ctx: fakeContext(p.dir) });
    const v = await call<VersionResponse__Output>((cb) => clients.runtime.Version({}, deadline(), cb));
    assert.equal(v.runtimeName, 'usernode');
  });

  test('stop() removes the socket, may be called twice, and calls then fail', async () => {
    const p = place();
    const server = new CriServer({ socketPath: p.socket, ctx: fakeContext(p.dir), uid });
    await server.start();
    const clients = criClients(p.socket);
    try {
      await call((cb) => clients.runtime.Version({}, deadline(), cb));
      await server.stop(1000);
      await assert.rejects(lstat(p.socket), { code: 'ENOENT' });
      await server.stop(1000);
      const err = await callError((cb) => clients.runtime.Version({}, { deadline: Date.now() + 1000 }, cb));
      assert.ok(err.code === grpc.status.UNAVAILABLE || err.code === grpc.status.DEADLINE_EXCEEDED, `code ${err.code}`);
    } finally {
      clients.close();
    }
  });

  test('stop() after a failed start() leaves the path alone', async () => {
    const p = place();
    await mkdir(p.dir, { recursive: true });
    await writeFile(p.socket, 'precious\n');
    const server = new CriServer({ socketPath: p.socket, ctx: fakeContext(p.dir), uid });
    await rejection(server.start());
    await server.stop(10);
    assert.equal(await readFile(p.socket, 'utf8'), 'precious\n');
  });

  test('stop() before start() is harmless', async () => {
    const p = place();
    const server = new CriServer({ socketPath: p.socket, ctx: fakeContext(p.dir), uid });
    await server.stop(10);
    await assert.rejects(lstat(p.socket), { code: 'ENOENT' });
  });

  test('after stop() a new server can start on the same path', async () => {
    const p = place();
    const first = new CriServer({ socketPath: p.socket, ctx: fakeContext(p.dir), uid });
    await first.start();
    await first.stop(1000);
    const { clients } = await startServer({ socket: p.socket, ctx: fakeContext(p.dir) });
    await call((cb) => clients.runtime.Version({}, deadline(), cb));
  });
});

describe('CriServer GetContainerEvents', () => {
  const event = (id: string, type: ContainerEvent['containerEventType'] = 'CONTAINER_CREATED_EVENT'): ContainerEvent => ({
    containerId: id,
    containerEventType: type,
    createdAt: '1',
    podSandboxStatus: null,
    containersStatuses: [],
  });
  const subscribers = (ctx: FakeContext, n: number): Promise<true> => eventually(`${n} event subscribers`, async () => (ctx.events.size === n ? true : undefined), 20000);
  const collect = (stream: grpc.ClientReadableStream<ContainerEventResponse__Output>): ContainerEventResponse__Output[] => {
    const got: ContainerEventResponse__Output[] = [];
    stream.on('data', (m: ContainerEventResponse__Output) => got.push(m));
    stream.on('error', () => {});
    return got;
  };

  test('several subscribers each get every event in order; one that cancels is let go', async () => {
    const { clients, ctx } = await startServer();
    const a = clients.runtime.GetContainerEvents({});
    const b = clients.runtime.GetContainerEvents({});
    const gotA = collect(a);
    const gotB = collect(b);
    await subscribers(ctx, 2);
    ctx.events.publish(event('c1'));
    ctx.events.publish(event('c1', 'CONTAINER_STARTED_EVENT'));
    ctx.events.publish(event('c1', 'CONTAINER_STOPPED_EVENT'));
    const seen = (got: ContainerEventResponse__Output[]): string[] => got.map((e) => `${e.containerId} ${e.containerEventType}`);
    const want = ['c1 CONTAINER_CREATED_EVENT', 'c1 CONTAINER_STARTED_EVENT', 'c1 CONTAINER_STOPPED_EVENT'];
    await eventually('both subscribers got three events', async () => (gotA.length >= 3 && gotB.length >= 3 ? true : undefined), 20000);
    assert.deepEqual(seen(gotA), want);
    assert.deepEqual(seen(gotB), want);
    a.cancel();
    await subscribers(ctx, 1);
    ctx.events.publish(event('c2'));
    await eventually('the remaining subscriber got the next event', async () => (gotB.length === 4 ? true : undefined), 20000);
    assert.equal(gotA.length, 3);
    b.cancel();
    await subscribers(ctx, 0);
  });

  test('a subscriber that stops reading is dropped with RESOURCE_EXHAUSTED; the others get every event', async () => {
    const p = place();
    const ctx = fakeContext(p.dir);
    ctx.events = new EventBus<ContainerEvent>(20);
    const { clients, socket } = await startServer({ ctx });
    // The slow client is another process, as a real one is: in this process its unread data would be taken off the socket anyway.
    const script = `const { criClients } = await import(${JSON.stringify(new URL('../../proto/client.js', import.meta.url).href)});
      const s = criClients(${JSON.stringify(socket)}).runtime.GetContainerEvents({});
      s.pause();
      s.on('error', (e) => { process.stdout.write(JSON.stringify({ code: e.code, details: e.details })); process.exit(0); });`;
    const slow = spawn(process.execPath, ['--input-type=module', '-e', script], { stdio: ['ignore', 'pipe', 'inherit'] });
    let slowOut = '';
    slow.stdout.on('data', (d: Buffer) => (slowOut += d.toString()));
    const slowExit = once(slow, 'exit');
    try {
      const fast = clients.runtime.GetContainerEvents({});
      const got = collect(fast);
      let wake = (): void => {};
      fast.on('data', () => wake());
      /** Until the fast subscriber has `n` events (never a fixed time: the host may be busy). */
      const fastHas = (n: number): Promise<void> =>
        new Promise((resolve, reject) => {
          const t = setTimeout(() => reject(new Error(`the fast subscriber got ${got.length} of ${n} events in 60 s`)), 60000);
          wake = () => {
            if (got.length >= n) {
              clearTimeout(t);
              resolve();
            }
          };
          wake();
        });
      await subscribers(ctx, 2);
      // Big events, so the unread stream's HTTP/2 window and grpc-js's buffer fill soon. Batches
      // of 10 in lockstep with the fast reader: only the slow one can fall 20 behind.
      const pad = 'x'.repeat(4000);
      let sent = 0;
      while (ctx.events.size === 2 && sent < 100000) {
        for (let k = 0; k < 10; k++) ctx.events.publish(event(`${pad}-${sent++}`));
        await fastHas(sent);
      }
      assert.equal(ctx.events.size, 1, `the slow subscriber was not dropped after ${sent} events`);
      const timeout = new Promise<never>((_, reject) => setTimeout(() => reject(new Error(`the slow client saw no error: ${slowOut}`)), 60000).unref());
      await Promise.race([slowExit, timeout]);
      const err = JSON.parse(slowOut) as { code: number; details: string };
      assert.equal(err.code, grpc.status.RESOURCE_EXHAUSTED);
      assert.match(err.details, /fell 20 events behind/);
      for (let i = 0; i < 10; i++) ctx.events.publish(event(`after-${i}`));
      await fastHas(sent + 10);
      const ids = got.map((e) => e.containerId);
      assert.equal(ids.length, sent + 10);
      assert.ok(
        ids.every((id, i) => id === (i < sent ? `${pad}-${i}` : `after-${i - sent}`)),
        'the fast subscriber missed or reordered events',
      );
      fast.cancel();
    } finally {
      slow.kill('SIGKILL');
    }
  });

  test('streams end with UNAVAILABLE when the bus closes (the server stopping)', async () => {
    const { clients, ctx } = await startServer();
    const s = clients.runtime.GetContainerEvents({});
    collect(s);
    await subscribers(ctx, 1);
    const [err] = (await Promise.all([once(s, 'error'), Promise.resolve().then(() => ctx.events.close())]))[0] as [grpc.ServiceError];
    assert.equal(err.code, grpc.status.UNAVAILABLE);
    assert.match(err.details, /closed by server/);
  });
});
