import assert from 'node:assert/strict';
import { once } from 'node:events';
import { readFile, mkdir, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { connect } from 'node:net';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';

import * as grpc from '@grpc/grpc-js';
import protobuf from 'protobufjs';
import type { Method, Service } from 'protobufjs';

import { criProtoPath } from '../../proto/cri.js';
import { criCall, criClients, type CriClients } from '../../proto/client.js';
import { type AgentProcess, nodeWithBusybox, requiredEnv, type TestNode } from '../lib/agent.js';
import { baseRequest, blend, Fuzzer, garbage, type Known, mutate, prng } from '../lib/cri_fuzzer.js';

// Whatever a client sends, the runtime half answers and goes on serving: a
// seeded fuzz of every RPC of RuntimeService and ImageService with messages
// built from api.proto's own types (hostile strings, out-of-range numbers,
// unknown enum values, known and made-up ids), the same messages with bytes
// flipped or cut, and raw garbage. It asserts what a client would notice: the
// runtime half never restarts, no answer is INTERNAL or UNKNOWN (a client's
// mistake is INVALID_ARGUMENT, NOT_FOUND, FAILED_PRECONDITION …), every call
// answers before its deadline, nothing escaped to the process-level guard,
// and afterwards the runtime still runs a pod and everything the fuzz made is
// removed through the CRI.
//
// USERNODE_FUZZ_SEED=<n> replays a run (the seed is printed); with
// USERNODE_FUZZ_CONCURRENCY=1 the requests are the same ones in the same order.
// USERNODE_FUZZ_REQUESTS sets the count (default 2400).

const requests = Number(process.env.USERNODE_FUZZ_REQUESTS ?? 2400);
// One at a time by default: what two concurrent calls on one pod do is the concurrency tests' subject; more finds those races too.
const concurrency = Number(process.env.USERNODE_FUZZ_CONCURRENCY ?? 1);
const seed = Number(process.env.USERNODE_FUZZ_SEED ?? Math.floor(Math.random() * 2 ** 31));
const callDeadlineMs = 20000;
/** The one RPC that streams until cancelled: called with a short deadline, which it may reach. */
const foreverStreams = new Set(['GetContainerEvents']);
const foreverDeadlineMs = 300;

interface Outcome {
  method: string;
  kind: 'message' | 'mutated' | 'garbage';
  code: number;
  details: string;
  ms: number;
  sample: string;
}

function callRaw(client: grpc.Client, service: string, method: Method, body: Buffer): Promise<{ code: number; details: string; body?: Buffer }> {
  const path = `/runtime.v1.${service}/${method.name}`;
  const identity = (b: Buffer): Buffer => b;
  if (method.responseStream) {
    return new Promise((resolve) => {
      const deadline = Date.now() + (foreverStreams.has(method.name) ? foreverDeadlineMs : callDeadlineMs);
      const call = client.makeServerStreamRequest(path, identity, identity, body, new grpc.Metadata(), { deadline });
      call.on('data', () => undefined);
      call.on('error', (e: grpc.ServiceError) => resolve({ code: e.code, details: e.details }));
      call.on('end', () => resolve({ code: 0, details: '' }));
    });
  }
  return new Promise((resolve) => {
    client.makeUnaryRequest(path, identity, identity, body, new grpc.Metadata(), { deadline: Date.now() + callDeadlineMs }, (err, res?: Buffer) =>
      resolve(err ? { code: err.code ?? grpc.status.UNKNOWN, details: err.details ?? err.message } : { code: 0, details: '', ...(res ? { body: res } : {}) }),
    );
  });
}

/** The raw HTTP answer (and whatever follows) to a SPDY upgrade of a streaming URL; '' when the server closed without one. */
async function spdyUpgrade(url: string, protocol: string): Promise<string> {
  const u = new URL(url);
  const s = connect(Number(u.port), u.hostname);
  await once(s, 'connect');
  s.write(`POST ${u.pathname} HTTP/1.1\r\nHost: ${u.host}\r\nConnection: Upgrade\r\nUpgrade: SPDY/3.1\r\nX-Stream-Protocol-Version: ${protocol}\r\n\r\n`);
  let text = '';
  s.on('data', (d: Buffer) => (text += d.toString('latin1')));
  s.on('error', () => undefined);
  await Promise.race([once(s, 'close'), new Promise((r) => setTimeout(r, 3000))]);
  s.destroy();
  return text;
}

/** A SPDY upgrade of a streaming URL, then SPDY-looking frames with random bodies and plain garbage; the connection is dropped after a moment. */
async function garbageSession(url: string, protocol: string, f: Fuzzer): Promise<void> {
  const u = new URL(url);
  const s = connect(Number(u.port), u.hostname);
  s.on('error', () => undefined);
  await Promise.race([once(s, 'connect'), new Promise((r) => setTimeout(r, 2000))]);
  s.write(`POST ${u.pathname} HTTP/1.1\r\nHost: ${u.host}\r\nConnection: Upgrade\r\nUpgrade: SPDY/3.1\r\nX-Stream-Protocol-Version: ${protocol}\r\n\r\n`);
  for (let i = 0; i < 1 + f.int(6); i++) {
    const body = garbage(f).subarray(0, 4096);
    const head = Buffer.alloc(8);
    // A control frame (version 3, a type 1-9) or a data frame, with a length that may lie.
    if (f.chance(0.6)) {
      head.writeUInt16BE(0x8003, 0);
      head.writeUInt16BE(1 + f.int(9), 2);
    } else {
      head.writeUInt32BE(f.int(16), 0);
    }
    head.writeUInt32BE((f.int(2) << 24) | (f.chance(0.8) ? body.length : f.int(1 << 24)), 4);
    s.write(f.chance(0.8) ? Buffer.concat([head, body]) : body);
  }
  await new Promise((r) => setTimeout(r, 100));
  s.destroy();
}

const summary = (o: unknown): string => {
  const s = JSON.stringify(o, (_k, v: unknown) => (typeof v === 'string' && v.length > 80 ? `${v.slice(0, 40)}…(${v.length} chars)` : Buffer.isBuffer(v) ? `<${v.length} bytes>` : v));
  return s.length > 600 ? `${s.slice(0, 600)}…` : s;
};

describe('CRI fuzz: no request takes the runtime half down', () => {
  let node: TestNode;
  let agent: AgentProcess;
  let busybox: string;
  let cri: CriClients;
  let raw: grpc.Client;
  let known: Known;
  let runtimePid: string;

  const runtimePidNow = async (): Promise<string> => (await readFile(join(node.runtimeDir, 'runtime.pid'), 'utf8')).trim();
  const rt = <T>(method: string, req: object): Promise<T> => criCall<T>(cri, 'runtime', method, req);
  const img = <T>(method: string, req: object): Promise<T> => criCall<T>(cri, 'image', method, req);

  /** A pod with a running container whose ids the fuzz uses; made again when the fuzz removed them. */
  const ensureKnown = async (): Promise<void> => {
    // The fuzz's own RemoveImage, StopPodSandbox or RemoveContainer may take something away midway: try again.
    for (let attempt = 1; ; attempt++) {
      try {
        return await makeKnown();
      } catch (e: unknown) {
        if (attempt >= 5) throw e;
      }
    }
  };
  const makeKnown = async (): Promise<void> => {
    const st = await img<{ image: { id: string } | null }>('ImageStatus', { image: { image: busybox } });
    if (!st.image) await img('PullImage', { image: { image: busybox } });
    const image = (await img<{ image: { id: string } }>('ImageStatus', { image: { image: busybox } })).image;
    const pod = await rt<{ status: { state: string } }>('PodSandboxStatus', { podSandboxId: known?.podId ?? '' }).catch(() => undefined);
    let podId = known?.podId ?? '';
    let podConfig = { metadata: { name: `known-${Date.now()}`, namespace: 'fuzz', uid: `uid-${Date.now()}`, attempt: 0 }, logDirectory: join(node.dir, 'logs', 'known'), linux: {} };
    if (pod?.status.state !== 'SANDBOX_READY') {
      podId = (await rt<{ podSandboxId: string }>('RunPodSandbox', { config: podConfig })).podSandboxId;
    } else {
      podConfig = known.podConfig as typeof podConfig;
    }
    const ctr = await rt<{ status: { state: string } }>('ContainerStatus', { containerId: known?.containerId ?? '' }).catch(() => undefined);
    let containerId = known?.containerId ?? '';
    if (podId !== known?.podId || ctr?.status.state !== 'CONTAINER_RUNNING') {
      containerId = (
        await rt<{ containerId: string }>('CreateContainer', {
          podSandboxId: podId,
          config: { metadata: { name: `box-${Date.now()}` }, image: { image: busybox }, command: ['sh', '-c', 'trap "exit 0" TERM; while true; do sleep 1; done'], logPath: `box-${Date.now()}.log`, linux: {} },
          sandboxConfig: podConfig,
        })
      ).containerId;
      await rt('StartContainer', { containerId });
    }
    known = { ...known, podId, containerId, imageId: image.id, podConfig };
  };

  before(async () => {
    ({ node, agent, busybox } = await nodeWithBusybox());
    cri = criClients(node.socket);
    raw = new grpc.Client(`unix://${node.socket}`, grpc.credentials.createInsecure());
    const safeDir = join(node.dir, 'fuzz');
    await mkdir(safeDir, { recursive: true });
    known = { podId: '', containerId: '', imageId: '', imageRef: busybox, registry: requiredEnv('USERNODE_REGISTRY'), safeDir, pods: [], containers: [] };
    await ensureKnown();
    runtimePid = await runtimePidNow();
  });

  after(async () => {
    // The whole agent log, for a failure's post-mortem (the test user's /tmp).
    if (agent) await writeFile(join(tmpdir(), `cri-fuzz-${seed}.log`), agent.log).catch(() => undefined);
    raw?.close();
    cri?.close();
    agent?.child.kill('SIGTERM');
    await node?.destroy();
  });

  it('answers the known crashers: a command with a brace, a port-forward URL of a removed pod, an exec URL of a removed container', async () => {
    const podConfig = { metadata: { name: 'crashers', namespace: 'fuzz', uid: 'crashers-uid', attempt: 0 }, logDirectory: join(node.dir, 'logs', 'crashers'), linux: {} };
    const { podSandboxId } = await rt<{ podSandboxId: string }>('RunPodSandbox', { config: podConfig });
    // conmon's report of runc's failure quotes the command: its brace once cut the report short and threw in a listener.
    const brace = await rt('CreateContainer', {
      podSandboxId,
      config: { metadata: { name: 'brace' }, image: { image: busybox }, command: ['/no}such'], logPath: 'brace.log', linux: {} },
      sandboxConfig: podConfig,
    }).then(
      () => ({ code: 0, message: 'created' }),
      (e: { code?: number; message: string }) => ({ code: e.code ?? -1, message: e.message }),
    );
    assert.equal(grpc.status[brace.code], 'FAILED_PRECONDITION', brace.message);
    assert.match(brace.message, /no\}such/);

    const { url } = await rt<{ url: string }>('PortForward', { podSandboxId, port: [80] });
    await rt('StopPodSandbox', { podSandboxId });
    await rt('RemovePodSandbox', { podSandboxId });
    assert.match(await spdyUpgrade(url, 'portforward.k8s.io'), /^HTTP\/1\.1 404 /);

    const { containerId } = known;
    const exec = await rt<{ url: string }>('Exec', { containerId, cmd: ['true'], stdout: true });
    const attach = await rt<{ url: string }>('Attach', { containerId, stdout: true });
    await rt('StopContainer', { containerId, timeout: 1 });
    await rt('RemoveContainer', { containerId });
    for (const u of [exec.url, attach.url]) assert.match(await spdyUpgrade(u, 'v4.channel.k8s.io'), /^HTTP\/1\.1 404 /);
    await ensureKnown();
    assert.equal(await runtimePidNow(), runtimePid, 'the runtime half was restarted');
  });

  it(`answers ${requests} random, mutated and garbage requests to every RPC with a client's error or success, never INTERNAL, UNKNOWN or a timeout, and never restarts`, { timeout: 15 * 60 * 1000 }, async (t) => {
    const root = protobuf.loadSync(criProtoPath);
    root.resolveAll();
    const services = ['RuntimeService', 'ImageService'].map((s) => ({ name: s, def: root.lookupService(`runtime.v1.${s}`) as Service }));
    const methods = services.flatMap((s) => s.def.methodsArray.map((m) => ({ service: s.name, method: m, type: m.resolvedRequestType! })));
    const rand = prng(seed);
    const f = new Fuzzer(rand, () => known);
    t.diagnostic(`seed ${seed} (USERNODE_FUZZ_SEED=${seed} replays it), ${requests} requests, ${methods.length} RPCs, concurrency ${concurrency}`);
    const started = Date.now();

    const outcomes: Outcome[] = [];
    let streamed = 0;
    let next = 0;
    let lastEnsure = 0;
    // Every RPC gets its share: the methods in turn, the kind of request at random.
    const one = async (): Promise<void> => {
      for (;;) {
        const i = next++;
        if (i >= requests) return;
        if (i - lastEnsure >= 100) {
          lastEnsure = i;
          await ensureKnown();
        }
        const { service, method, type } = methods[i % methods.length]!;
        const r = rand();
        let kind: Outcome['kind'];
        let body: Buffer;
        let sample: string;
        if (r < 0.15) {
          kind = 'garbage';
          body = garbage(f);
          sample = `<${body.length} random bytes>`;
        } else {
          // Half the requests to an RPC with deep work start from one that would succeed, with some values made hostile.
          const base = baseRequest(f, method.name);
          const msg = (base && f.chance(0.5) ? blend(f, base, f.message(type, 0), 0.2) : f.message(type, 0)) as Record<string, unknown>;
          f.guard(method.name, msg);
          let bytes: Uint8Array;
          try {
            bytes = type.encode(type.fromObject(msg)).finish();
          } catch (e: unknown) {
            throw new Error(`the fuzz could not encode its own ${type.name} (seed ${seed}): ${(e as Error).message}: ${summary(msg)}`);
          }
          sample = summary(msg);
          if (r < 0.3 && method.name !== 'PullImage') {
            kind = 'mutated';
            body = mutate(f, bytes);
          } else {
            kind = 'message';
            body = Buffer.from(bytes);
          }
        }
        const t0 = Date.now();
        const res = await callRaw(raw, service, method, body);
        // A streaming URL handed out is used, with garbage after the upgrade: the streaming server shares the runtime half's process.
        if (res.code === 0 && res.body && (method.name === 'Exec' || method.name === 'Attach' || method.name === 'PortForward')) {
          const { url } = method.resolvedResponseType!.decode(res.body) as unknown as { url: string };
          streamed++;
          await garbageSession(url, method.name === 'PortForward' ? 'portforward.k8s.io' : 'v4.channel.k8s.io', f);
        }
        // What the fuzz made becomes a known id for the requests after it (and is removed at the end).
        if (res.code === 0 && res.body && (method.name === 'RunPodSandbox' || method.name === 'CreateContainer')) {
          const out = method.resolvedResponseType!.decode(res.body) as unknown as { podSandboxId?: string; containerId?: string };
          if (out.podSandboxId) known.pods.push(out.podSandboxId);
          if (out.containerId) known.containers.push(out.containerId);
        }
        outcomes.push({ method: method.name, kind, code: res.code, details: res.details, ms: Date.now() - t0, sample });
      }
    };
    // A worker that fails stops the others before the test goes on: none may make pods while the clean-up lists them.
    const workers = Array.from({ length: concurrency }, () =>
      one().catch((e: unknown) => {
        next = requests;
        throw e;
      }),
    );
    const settled = await Promise.allSettled(workers);
    for (const r of settled) if (r.status === 'rejected') throw r.reason;
    const seconds = (Date.now() - started) / 1000;

    const byCode = new Map<string, number>();
    for (const o of outcomes) byCode.set(grpc.status[o.code] ?? String(o.code), (byCode.get(grpc.status[o.code] ?? String(o.code)) ?? 0) + 1);
    t.diagnostic(`${streamed} streaming URLs used with garbage after the upgrade`);
    t.diagnostic(`${outcomes.length} requests in ${seconds.toFixed(1)} s; by code: ${[...byCode].sort((a, b) => b[1] - a[1]).map(([c, n]) => `${c} ${n}`).join(', ')}`);
    const deep = ['RunPodSandbox', 'CreateContainer', 'StartContainer', 'StopContainer', 'ExecSync', 'PullImage', 'UpdateContainerResources', 'RemovePodSandbox'];
    for (const m of deep) {
      const codes = new Map<string, number>();
      for (const o of outcomes.filter((x) => x.method === m)) codes.set(grpc.status[o.code] ?? String(o.code), (codes.get(grpc.status[o.code] ?? String(o.code)) ?? 0) + 1);
      t.diagnostic(`  ${m}: ${[...codes].map(([c, n]) => `${c} ${n}`).join(', ')}`);
    }
    const perMethod = new Set(outcomes.map((o) => o.method));
    assert.equal(perMethod.size, methods.length, 'every RPC was called');

    const bad = outcomes.filter(
      (o) => o.code === grpc.status.INTERNAL || o.code === grpc.status.UNKNOWN || (o.code === grpc.status.DEADLINE_EXCEEDED && !foreverStreams.has(o.method)) || o.code === grpc.status.UNAVAILABLE,
    );
    const shown = bad.slice(0, 25).map((o) => `${o.method} [${o.kind}] → ${grpc.status[o.code]} (${o.ms} ms): ${o.details.slice(0, 300)}\n    request: ${o.sample}`);
    assert.deepEqual(shown, [], `seed ${seed}: ${bad.length} answers were INTERNAL, UNKNOWN, UNAVAILABLE or past their deadline`);

    assert.equal(await runtimePidNow(), runtimePid, 'the runtime half was restarted');
    assert.doesNotMatch(agent.log, /exited; restarting it/, 'the agent log shows a restart of the runtime half');
    const metrics = await (await fetch(agent.metricsUrl)).text();
    const escaped = [...metrics.matchAll(/^usernode_runtime_uncaught_errors_total\{kind="(\w+)"\} (\d+)/gm)].filter((m) => m[2] !== '0');
    assert.deepEqual(
      escaped.map((m) => `${m[1]}: ${m[2]}`),
      [],
      `errors escaped to the process guard:\n${agent.log.split('\n').filter((l) => /still serving/.test(l)).slice(0, 5).join('\n')}`,
    );
  });

  it('still serves afterwards: Version, and a new pod with a running container', async () => {
    const v = await rt<{ runtimeName: string }>('Version', {});
    assert.equal(v.runtimeName, 'usernode');
    if (!(await img<{ image: unknown }>('ImageStatus', { image: { image: busybox } })).image) await img('PullImage', { image: { image: busybox } });
    const podConfig = { metadata: { name: 'after-fuzz', namespace: 'fuzz', uid: 'after-fuzz-uid', attempt: 0 }, logDirectory: join(node.dir, 'logs', 'after'), linux: {} };
    const { podSandboxId } = await rt<{ podSandboxId: string }>('RunPodSandbox', { config: podConfig });
    const { containerId } = await rt<{ containerId: string }>('CreateContainer', {
      podSandboxId,
      config: { metadata: { name: 'after' }, image: { image: busybox }, command: ['sleep', '300'], logPath: 'after.log', linux: {} },
      sandboxConfig: podConfig,
    });
    await rt('StartContainer', { containerId });
    const s = await rt<{ status: { state: string } }>('ContainerStatus', { containerId });
    assert.equal(s.status.state, 'CONTAINER_RUNNING');
  });

  it('removes everything the fuzz made through the CRI: no pod, container, netns mount or veth is left', async () => {
    for (const p of (await rt<{ items: Array<{ id: string }> }>('ListPodSandbox', {})).items) {
      await rt('StopPodSandbox', { podSandboxId: p.id });
      await rt('RemovePodSandbox', { podSandboxId: p.id });
    }
    for (const c of (await rt<{ containers: Array<{ id: string }> }>('ListContainers', {})).containers) await rt('RemoveContainer', { containerId: c.id });
    assert.deepEqual((await rt<{ items: unknown[] }>('ListPodSandbox', {})).items, []);
    assert.deepEqual((await rt<{ containers: unknown[] }>('ListContainers', {})).containers, []);
    const links = await node.enter(['ip', '-o', 'link']);
    assert.deepEqual(links.stdout.split('\n').filter((l) => /veth/.test(l)), [], 'veth devices left');
    const mounts = await node.enter(['cat', '/proc/self/mountinfo']);
    assert.deepEqual(mounts.stdout.split('\n').filter((l) => l.includes(join(node.runtimeDir, 'netns'))), [], 'pod netns mounts left');
  });
});
