import assert from 'node:assert/strict';
import { existsSync, readFileSync } from 'node:fs';
import { readdir, readFile, readlink, rm, writeFile } from 'node:fs/promises';
import { request } from 'node:http';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';

import * as grpc from '@grpc/grpc-js';

import type { CriClients } from '../../proto/client.js';
import { loadCri } from '../../proto/cri.js';
import { processesOf } from '../../pkg/netns/procfs.js';
import { type AgentProcess, requiredEnv, sleep, TestNode } from '../lib/agent.js';

// Crash consistency of the runtime half (issue 13, deliverable 2): it is
// SIGKILLed at every named step between the side effects of RunPodSandbox,
// CreateContainer, StartContainer, StopPodSandbox, RemovePodSandbox and
// PullImage (the test-only hook USERNODE_TEST_KILL_AT_FILE), then at random
// instants while pods start and stop and images are pulled, hundreds of times;
// the node half restarts it each time. Afterwards every pod is stopped and
// removed through the CRI as kubelet would, and nothing of any kind may be
// left: netns bind mounts, veths, IP leases, host ports, NAT rules,
// catatonit/conmon/runc or container processes, runc state, overlay mounts,
// bundles, snapshots, pod files, pull ingests. A second case wipes the
// runtime folder, as a reboot or systemd-logind at logout does.

const KILLS_AT_RANDOM = 170;

const steps: Array<{ step: string; via: 'cycle' | 'pull' }> = [
  ...['namespaces', 'pid_namespace', 'loopback', 'cni_add', 'host_port', 'files', 'record'].map((s) => ({ step: `run_pod_sandbox.${s}`, via: 'cycle' as const })),
  ...['rootfs', 'bundle', 'spec', 'conmon', 'record'].map((s) => ({ step: `create_container.${s}`, via: 'cycle' as const })),
  ...['runc_start', 'record'].map((s) => ({ step: `start_container.${s}`, via: 'cycle' as const })),
  // StopPodSandbox's release path runs again inside RemovePodSandbox: ":2" is that second time.
  ...['containers', 'pid_namespace', 'host_ports', 'cni_del'].flatMap((s) => [`stop_pod_sandbox.${s}`, `stop_pod_sandbox.${s}:2`]).map((step) => ({ step, via: 'cycle' as const })),
  ...['stop', 'containers', 'namespaces', 'files'].map((s) => ({ step: `remove_pod_sandbox.${s}`, via: 'cycle' as const })),
  ...['manifest', 'config', 'layer_fetched', 'layer_fetched:2', 'layer_unpacked', 'layer_unpacked:2', 'record'].map((s) => ({ step: `pull_image.${s}`, via: 'pull' as const })),
];

type Leftovers = Record<string, number>;

describe('crash recovery: the runtime half killed at any instant leaves nothing behind', () => {
  let node: TestNode;
  let agent: AgentProcess;
  let cri: CriClients;
  let busybox: string;
  let multilayer: string;
  let killFile: string;
  let kills = 0;
  // Host ports are the test host's: a range of this run's own, away from other runs'.
  const portBase = 20000 + Math.floor(Math.random() * 30) * 1000;
  let seq = 0;

  const runtimePid = (): number => Number(readFileSync(join(node.runtimeDir, 'runtime.pid'), 'utf8'));
  /** A CRI call with a deadline (a hung call would hang the test); the error keeps its gRPC code. */
  const call = <T>(service: 'runtime' | 'image', method: string, req: object, timeoutMs = 60000): Promise<T> => {
    const client = cri[service] as unknown as Record<string, (req: object, o: grpc.CallOptions, cb: (e: Error | null, r?: T) => void) => void>;
    return new Promise<T>((resolve, reject) => client[method]!.call(cri[service], req, { deadline: Date.now() + timeoutMs }, (e, r) => (e ? reject(e) : resolve(r as T))));
  };

  /** Until a runtime half other than `old` serves (ListPodSandbox answers: recovery is done). */
  const servingAgain = async (old?: number): Promise<void> => {
    const deadline = Date.now() + 60000;
    for (;;) {
      const now = existsSync(join(node.runtimeDir, 'runtime.pid')) ? runtimePid() : 0;
      if (now !== 0 && now !== old && (await call('runtime', 'ListPodSandbox', {}).then(() => true, () => false))) return;
      if (Date.now() > deadline) throw new Error(`the runtime half did not come back within 60 s:\n${agent.log.slice(-3000)}`);
      await sleep(25);
    }
  };

  const podConfig = (i: number, worker = 'steps'): object => ({
    metadata: { name: `crash-${i}`, namespace: 'default', uid: `uid-crash-${i}`, attempt: 0 },
    labels: { worker },
    logDirectory: join(node.dir, 'logs', String(i)),
    // Every other pod shares a process namespace (catatonit holds it).
    linux: { securityContext: { namespaceOptions: { pid: i % 2 === 0 ? 'POD' : 'CONTAINER' } } },
    // Every third pod has a host port (rootlesskit forward and portmap's NAT rules).
    portMappings: i % 3 === 0 ? [{ protocol: 'TCP', containerPort: 80, hostPort: portBase + (i % 10000) }] : [],
  });

  /** As kubelet does with pods it no longer wants: stop and remove (here: every pod of `worker`). */
  const removePodsOf = async (worker: string): Promise<void> => {
    try {
      const { items } = await call<{ items: Array<{ id: string }> }>('runtime', 'ListPodSandbox', { filter: { labelSelector: { worker } } });
      for (const p of items) {
        await call('runtime', 'StopPodSandbox', { podSandboxId: p.id });
        await call('runtime', 'RemovePodSandbox', { podSandboxId: p.id });
      }
    } catch {
      // Killed meanwhile: the next round tries again.
    }
  };

  /**
   * RunPodSandbox, CreateContainer, StartContainer, StopPodSandbox,
   * RemovePodSandbox, giving up at the first error (the runtime half died;
   * what it left is the point). Resolves with how far it got.
   */
  const cycle = async (worker = 'steps'): Promise<number> => {
    const i = seq++;
    const config = podConfig(i, worker);
    let done = 0;
    try {
      const { podSandboxId } = await call<{ podSandboxId: string }>('runtime', 'RunPodSandbox', { config });
      done++;
      const { containerId } = await call<{ containerId: string }>('runtime', 'CreateContainer', {
        podSandboxId,
        sandboxConfig: config,
        config: { metadata: { name: 'app', attempt: 0 }, image: { image: busybox }, command: ['sleep', '3600'], logPath: 'app.log' },
      });
      done++;
      await call('runtime', 'StartContainer', { containerId });
      done++;
      await call('runtime', 'StopPodSandbox', { podSandboxId });
      done++;
      await call('runtime', 'RemovePodSandbox', { podSandboxId });
      done++;
    } catch {
      // The runtime half was killed: the next start must clean up after it.
    }
    return done;
  };

  const pull = async (): Promise<void> => {
    try {
      await call('image', 'PullImage', { image: { image: multilayer } });
      await call('image', 'RemoveImage', { image: { image: multilayer } });
    } catch {
      // Killed meanwhile.
    }
  };

  /** What a pod or container could leave behind, counted in and around the node namespace. */
  const leftovers = async (): Promise<Leftovers> => {
    const data = join(node.dir, 'data', 'usernode');
    const run = node.runtimeDir;
    const ns = await node.nodeNamespaceRecord();
    const entries = async (dir: string, filter: (n: string) => boolean = () => true): Promise<number> => (await readdir(dir).catch(() => [] as string[])).filter(filter).length;
    const id = (n: string): boolean => /^[0-9a-f]{64}/.test(n);
    const mountinfo = (await node.enter(['cat', '/proc/self/mountinfo'])).stdout.split('\n');
    const links = await node.enter(['ip', '-o', 'link', 'show', 'master', 'usernode0']);
    const nat = await node.enter(['iptables', '-t', 'nat', '-S']);
    assert.equal(nat.code, 0, nat.stderr);
    const ports = JSON.parse(await httpGet(join(run, 'rootlesskit', 'api.sock'), '/v1/ports')) as Array<{ spec: { childIP?: string } }> | null;
    const inNode = [];
    // slirp4netns joins the node's user namespace from the host's network namespace.
    const hostNet = await readlink('/proc/self/ns/net');
    for (const p of await processesOf(process.getuid?.() ?? 0)) {
      if (p.userNs !== ns.userNs || p.pid === ns.holderPid) continue;
      const net = await readlink(`/proc/${p.pid}/ns/net`).catch(() => '');
      inNode.push({ comm: p.comm, podNetwork: net !== '' && net !== ns.netNs && net !== hostNet });
    }
    return {
      'netns bind mounts': mountinfo.filter((l) => l.includes(`${run}/netns/`)).length,
      'overlay mounts': mountinfo.filter((l) => l.includes(`${data}/snapshots/containers/`) || l.includes('/run/usernode/userns/')).length,
      'netns folders': await entries(join(run, 'netns'), id),
      'veths on the bridge': links.stdout.split('\n').filter((l) => /veth/.test(l)).length,
      'IP leases': await entries(join(data, 'cni', 'ipam', 'usernode'), (n) => /^\d+\.\d+\.\d+\.\d+$/.test(n)),
      'host ports to pods': (ports ?? []).filter((f) => (f.spec.childIP ?? '').startsWith('10.88.')).length,
      'NAT rules of pods': nat.stdout.split('\n').filter((l) => /CNI-DN-|dnat name/.test(l)).length,
      'catatonit processes': inNode.filter((p) => p.comm === 'catatonit').length,
      'conmon processes': inNode.filter((p) => p.comm === 'conmon').length,
      'runc processes': inNode.filter((p) => p.comm.startsWith('runc')).length,
      'container processes': inNode.filter((p) => p.podNetwork).length,
      'runc state entries': await entries(join(run, 'runc'), id),
      bundles: await entries(join(run, 'bundles'), id),
      'exit files': await entries(join(run, 'exits'), id),
      'attach folders': await entries(join(run, 'attach'), id),
      snapshots: await entries(join(data, 'snapshots', 'containers'), id),
      'pod files': await entries(join(data, 'pods', 'files'), id),
      'sandbox records': await entries(join(data, 'pods', 'sandboxes'), (n) => n.endsWith('.json')),
      'container records': await entries(join(data, 'pods', 'containers'), (n) => n.endsWith('.json')),
      'pull ingests': (await entries(join(data, 'images', 'content', 'ingest'))) + (await entries(join(data, 'snapshots', 'layers'), (n) => n.includes('.unpack-'))),
    };
  };

  /** As kubelet would: every pod stopped and removed, then the pulled image. */
  const removeEverything = async (): Promise<void> => {
    const { items } = await call<{ items: Array<{ id: string }> }>('runtime', 'ListPodSandbox', {});
    for (const p of items) {
      await call('runtime', 'StopPodSandbox', { podSandboxId: p.id });
      await call('runtime', 'RemovePodSandbox', { podSandboxId: p.id });
    }
    const { containers } = await call<{ containers: Array<{ id: string }> }>('runtime', 'ListContainers', {});
    for (const c of containers) await call('runtime', 'RemoveContainer', { containerId: c.id });
    await call('image', 'RemoveImage', { image: { image: multilayer } });
  };

  const zero = (l: Leftovers): Leftovers => Object.fromEntries(Object.keys(l).map((k) => [k, 0]));

  before(async () => {
    const bed = JSON.parse(await readFile(requiredEnv('USERNODE_TEST_IMAGES'), 'utf8')) as { registry: string };
    busybox = `${bed.registry}/usernode/busybox:latest`;
    multilayer = `${bed.registry}/usernode/multilayer:latest`;
    node = await TestNode.create();
    await node.writeConfig(`registries:\n  "${bed.registry}": { plainHttp: true }\n`);
    killFile = join(node.dir, 'kill-at');
    node.env.USERNODE_TEST_KILL_AT_FILE = killFile;
    node.env.USERNODE_TEST_RUNTIME_RESTART_MS = '0';
    agent = node.start();
    await agent.ready();
    cri = quickClients(node.socket);
    await call('image', 'PullImage', { image: { image: busybox } });
  });

  after(async () => {
    cri?.close();
    agent?.child.kill('SIGTERM');
    await agent?.exited;
    await node?.destroy();
  });

  it('is killed at every named step of the six RPCs, and at random instants, then leaves nothing once every pod is removed', async (t) => {
    const started = Date.now();
    for (const { step, via } of steps) {
      const pid = runtimePid();
      // Pull steps need the image's blobs and layers to be absent.
      if (via === 'pull') await call('image', 'RemoveImage', { image: { image: multilayer } });
      await writeFile(killFile, step);
      for (let tries = 0; tries < 6 && existsSync(killFile); tries++) {
        if (via === 'cycle') await cycle();
        else await pull();
      }
      assert.ok(!existsSync(killFile), `the runtime half never reached step ${step}`);
      await servingAgain(pid);
      kills++;
      // What the killed cycle left, removed as kubelet would remove a pod it gave up on.
      await removePodsOf('steps');
    }
    t.diagnostic(`${kills} kills at named steps in ${((Date.now() - started) / 1000).toFixed(0)} s`);

    // Random instants: two clients busy with pods and pulls; the runtime half is killed
    // a random moment after it serves again.
    const randomStart = Date.now();
    let stop = false;
    const cycles = { n: 0, completed: 0 };
    const worker = async (name: string, withPulls: boolean): Promise<void> => {
      while (!stop) {
        // What a killed cycle left (its pod, maybe one whose RunPodSandbox answer was lost) goes first.
        await removePodsOf(name);
        if (withPulls && cycles.n % 4 === 0) await pull();
        cycles.n++;
        if ((await cycle(name)) === 5) cycles.completed++;
        else await sleep(50);
      }
    };
    const workers = [worker('w1', true), worker('w2', false)];
    let lastKilled = 0;
    for (let k = 0; k < KILLS_AT_RANDOM; k++) {
      if (k % 10 === 9) {
        // Every tenth kill comes while the runtime half starts and recovers (the kill before did not wait for it to serve).
        while (runtimePid() === lastKilled) await sleep(5);
        await sleep(Math.floor(Math.random() * 300));
      } else {
        await servingAgain();
        // Up to about one pod cycle (Run, Create, Start, Stop, Remove) after it serves again.
        await sleep(Math.floor(Math.random() * 900));
      }
      const pid = runtimePid();
      try {
        process.kill(pid, 'SIGKILL');
      } catch {
        continue;
      }
      kills++;
      lastKilled = pid;
      if (k % 10 !== 8) await servingAgain(pid);
    }
    stop = true;
    await Promise.all(workers);
    t.diagnostic(`${KILLS_AT_RANDOM} kills at random instants over ${cycles.n} pod cycles (${cycles.completed} complete) in ${((Date.now() - randomStart) / 1000).toFixed(0)} s`);

    await removeEverything();
    const left = await leftovers();
    t.diagnostic(`left after ${kills} kills: ${JSON.stringify(left)}`);
    const median = (xs: number[]): number => xs.sort((a, b) => a - b)[Math.floor(xs.length / 2)] ?? NaN;
    const field = (msg: string, name: string): number[] =>
      agent.log.split('\n').filter((l) => l.includes(`msg=${/\s/.test(msg) ? `"${msg}"` : msg} `)).map((l) => Number(new RegExp(` ${name}=(\\d+)`).exec(l)?.[1]));
    t.diagnostic(`runtime half: serving ${median(field('runtime half serving', 'sinceStartMs'))} ms after it starts (median), recovery ${median(field('recovered', 'ms'))} ms of that`);
    assert.deepEqual(left, zero(left), `left behind after ${kills} kills and removing every pod:\n${JSON.stringify(left, null, 2)}`);
    assert.ok(kills >= 200, `only ${kills} kills`);

    // And the runtime still works: a pod starts and goes without a trace.
    assert.equal(await cycle(), 5);
    assert.deepEqual(await leftovers(), zero(left));
  });

  it('recovers from a wiped runtime folder (reboot, logout) from its records: pods NOTREADY, leases and ports released, containers EXITED', async () => {
    await rm(killFile, { force: true });
    await servingAgain();
    const ids: Array<{ pod: string; container: string }> = [];
    for (let k = 0; k < 2; k++) {
      const config = podConfig(3 * (1000 + k));
      const { podSandboxId } = await call<{ podSandboxId: string }>('runtime', 'RunPodSandbox', { config });
      const { containerId } = await call<{ containerId: string }>('runtime', 'CreateContainer', {
        podSandboxId,
        sandboxConfig: config,
        config: { metadata: { name: 'app', attempt: 0 }, image: { image: busybox }, command: ['sleep', '3600'], logPath: 'app.log' },
      });
      await call('runtime', 'StartContainer', { containerId });
      ids.push({ pod: podSandboxId, container: containerId });
    }
    const leases = join(node.dir, 'data', 'usernode', 'cni', 'ipam', 'usernode');
    assert.equal((await readdir(leases)).filter((n) => /^\d+\.\d+\.\d+\.\d+$/.test(n)).length, 2);

    // As a reboot: every process of the node gone, then its runtime folder.
    cri.close();
    const ns = await node.nodeNamespaceRecord();
    agent.child.kill('SIGKILL');
    await agent.exited;
    const procs = await processesOf(process.getuid?.() ?? 0);
    const doomed = new Set([ns.parentPid, runtimePid(), ...procs.filter((p) => p.userNs === ns.userNs).map((p) => p.pid)]);
    // And their descendants (slirp4netns under rootlesskit).
    for (let grew = true; grew; ) {
      grew = false;
      for (const p of procs) {
        if (!doomed.has(p.pid) && doomed.has(p.ppid)) {
          doomed.add(p.pid);
          grew = true;
        }
      }
    }
    for (const pid of doomed) {
      try {
        process.kill(pid, 'SIGKILL');
      } catch {
        // Gone already.
      }
    }
    await sleep(500);
    await rm(node.runtimeDir, { recursive: true, force: true });

    agent = node.start();
    await agent.ready(120000);
    cri = quickClients(node.socket);
    await servingAgain();
    for (const { pod, container } of ids) {
      const p = await call<{ status: { state: string } }>('runtime', 'PodSandboxStatus', { podSandboxId: pod });
      assert.equal(p.status.state, 'SANDBOX_NOTREADY');
      const c = await call<{ status: { state: string; exitCode: number; reason: string } }>('runtime', 'ContainerStatus', { containerId: container });
      assert.equal(c.status.state, 'CONTAINER_EXITED');
      assert.equal(c.status.exitCode, 255);
      assert.equal(c.status.reason, 'Unknown');
    }
    assert.equal((await readdir(leases)).filter((n) => /^\d+\.\d+\.\d+\.\d+$/.test(n)).length, 0, 'the leases of the lost pods were not released');
    await removeEverything();
    const left = await leftovers();
    assert.deepEqual(left, zero(left), `left behind after a wiped runtime folder:\n${JSON.stringify(left, null, 2)}`);
  });
});

/**
 * CRI clients that reconnect within moments: grpc-js backs a channel off up to
 * two minutes after failed connections, and this test's runtime half is down
 * hundreds of times.
 */
function quickClients(socketPath: string): CriClients {
  const cri = loadCri();
  const options = { 'grpc.initial_reconnect_backoff_ms': 20, 'grpc.min_reconnect_backoff_ms': 20, 'grpc.max_reconnect_backoff_ms': 100 };
  const runtime = new cri.runtime.v1.RuntimeService(`unix://${socketPath}`, grpc.credentials.createInsecure(), options);
  const image = new cri.runtime.v1.ImageService(`unix://${socketPath}`, grpc.credentials.createInsecure(), options);
  return {
    runtime,
    image,
    close: () => {
      runtime.close();
      image.close();
    },
  };
}

function httpGet(socketPath: string, path: string): Promise<string> {
  return new Promise((resolve, reject) => {
    const req = request({ socketPath, path, method: 'GET', timeout: 10000 }, (res) => {
      let text = '';
      res.setEncoding('utf8');
      res.on('data', (c: string) => (text += c));
      res.on('end', () => (res.statusCode === 200 ? resolve(text) : reject(new Error(`GET ${path}: HTTP ${res.statusCode}: ${text}`))));
    });
    req.on('timeout', () => req.destroy(new Error(`GET ${path} timed out`)));
    req.on('error', reject);
    req.end();
  });
}
