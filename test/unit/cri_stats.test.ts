import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { existsSync } from 'node:fs';
import { mkdir, readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { describe, test } from 'node:test';

import { expectedCadvisorNames } from '../lib/cadvisor_names.js';
import { reopenContainerLog } from '../../pkg/cri/container_log_reopen.js';
import { containerStats } from '../../pkg/cri/container_stats.js';
import { listContainerStats } from '../../pkg/cri/container_stats_list.js';
import type { ContainerRuntime } from '../../pkg/cri/containers.js';
import type { CriContext } from '../../pkg/cri/context.js';
import type { PodRuntime } from '../../pkg/cri/pods.js';
import { listMetricDescriptors } from '../../pkg/cri/metric_descriptors_list.js';
import { listPodSandboxMetrics } from '../../pkg/cri/sandbox_metrics_list.js';
import { podSandboxStats } from '../../pkg/cri/sandbox_stats.js';
import { listPodSandboxStats } from '../../pkg/cri/sandbox_stats_list.js';
import { isCode } from '../../pkg/errdefs/errors.js';
import type { ContainerRootfs } from '../../pkg/image/container_rootfs.js';
import type { ImageService } from '../../pkg/image/image_service.js';
import { silentLogger } from '../../pkg/log/logger.js';
import { ConmonMonitor } from '../../pkg/sandbox/conmon.js';
import { type ContainerRecord, type ContainerState, ContainerStore } from '../../pkg/sandbox/container_store.js';
import type { ContainerMonitor } from '../../pkg/sandbox/oci_runtime.js';
import { type SandboxRecord, SandboxStore } from '../../pkg/sandbox/sandbox_store.js';
import { StatsCollector } from '../../pkg/sandbox/stats_collector.js';
import { fakeProc, netDevText } from '../lib/fake_proc.js';
import { rejection, tempFolders } from '../lib/unit.js';

// The stats and log RPCs as kubelet and critest call them, on a fake /proc
// and real stores: which containers are listed, what a running, created and
// exited one reports, what a pod sums up, and conmon's log reopening.

const { fresh } = tempFolders('usernode-cri-stats-');

interface Bed {
  ctx: CriContext;
  proc: string;
  reopened: Array<{ bundle: string; logPath: string }>;
  container(name: string, state: ContainerState, pod: string, labels?: Record<string, string>): Promise<ContainerRecord>;
  pod(name: string, labels?: Record<string, string>): Promise<SandboxRecord>;
}

async function bed(): Promise<Bed> {
  const dir = await fresh('bed');
  const containers = new ContainerStore(join(dir, 'containers'));
  const sandboxes = new SandboxStore(join(dir, 'sandboxes'));
  await Promise.all([containers.init(), sandboxes.init()]);
  const proc = join(dir, 'proc');
  await mkdir(proc);
  const exitDir = join(dir, 'exits');
  await mkdir(exitDir);
  const reopened: Bed['reopened'] = [];
  const monitor: ContainerMonitor = {
    create: () => Promise.reject(new Error('not in these tests')),
    resizeTerminal: () => Promise.reject(new Error('not in these tests')),
    reopenLog: async (bundle, logPath) => {
      reopened.push({ bundle, logPath });
    },
  };
  const ctx = {
    log: silentLogger,
    dirs: { images: join(dir, 'images'), snapshots: join(dir, 'snapshots') },
    images: {} as ImageService,
    pods: { store: sandboxes } as unknown as PodRuntime,
    containers: {
      store: containers,
      exitDir,
      monitor,
      rootfs: { writableDir: async (id: string) => join(dir, 'snapshots', 'containers', id, 'upper') } as unknown as ContainerRootfs,
      stats: new StatsCollector({ log: silentLogger, noCgroupReason: 'test', procRoot: proc, cgroupRoot: join(dir, 'cgroup') }),
    } as unknown as ContainerRuntime,
  } as unknown as CriContext;
  return {
    ctx,
    proc,
    reopened,
    async container(name, state, pod, labels = {}) {
      const id = `${name}${'0'.repeat(64 - name.length)}`;
      const rootfs = join(dir, 'snapshots', 'containers', id, 'rootfs');
      const bundle = join(dir, 'bundles', id);
      await mkdir(rootfs, { recursive: true });
      await mkdir(bundle, { recursive: true });
      await mkdir(join(dir, 'snapshots', 'containers', id, 'upper', 'tmp'), { recursive: true });
      await writeFile(join(dir, 'snapshots', 'containers', id, 'upper', 'tmp', 'written'), 'x'.repeat(10000));
      await writeFile(join(bundle, 'config.json'), '{"linux":{}}');
      if (state === 'CONTAINER_EXITED') await writeFile(join(exitDir, id), '0');
      const r: ContainerRecord = {
        id,
        sandboxId: pod,
        metadata: { name, attempt: 0 },
        image: 'busybox',
        imageId: 'sha256:b',
        imageRef: 'sha256:b',
        labels,
        annotations: { a: '1' },
        state: state === 'CONTAINER_EXITED' ? 'CONTAINER_RUNNING' : state,
        createdAt: '1',
        startedAt: state === 'CONTAINER_CREATED' ? '0' : '2',
        finishedAt: '0',
        exitCode: 0,
        reason: '',
        message: '',
        pid: 0,
        logPath: join(dir, 'logs', `${name}.log`),
        bundle,
        rootfs,
        layers: [],
        mounts: [],
        stopSignal: 'SIGTERM',
        terminationMessagePath: '',
        config: {},
      };
      await containers.add(r);
      return r;
    },
    async pod(name, labels = {}) {
      const r: SandboxRecord = {
        id: `${name}${'f'.repeat(64 - name.length)}`,
        metadata: { name, uid: `${name}-uid`, namespace: 'default', attempt: 0 },
        state: 'SANDBOX_READY',
        createdAt: '1',
        labels,
        annotations: {},
        runtimeHandler: '',
        hostname: name,
        hostNetwork: false,
        namespaces: { net: join(dir, 'netns', name), ipc: '', uts: '' },
        files: { dir: '', hostname: '', hosts: '', resolvConf: '' },
        logDirectory: '',
        portMappings: [],
        config: {},
      };
      await sandboxes.add(r);
      return r;
    },
  };
}

const call = <Req, Res>(f: (req: Req, ctx: CriContext) => Promise<Res>, req: unknown, ctx: CriContext): Promise<Res> => f(req as Req, ctx);

describe('ListContainerStats and ContainerStats', () => {
  test('lists created, running and exited containers; only the running one has CPU and memory numbers', async () => {
    const b = await bed();
    const pod = await b.pod('p1');
    const created = await b.container('created', 'CONTAINER_CREATED', pod.id);
    const running = await b.container('running', 'CONTAINER_RUNNING', pod.id);
    const exited = await b.container('exited', 'CONTAINER_EXITED', pod.id);
    await fakeProc(b.proc, [{ pid: 10, ppid: 1, root: running.rootfs, utime: 250, pssKb: 2048 }]);
    const res = await call(listContainerStats, { filter: null }, b.ctx);
    const byId = new Map(res.stats!.map((s) => [s.attributes!.id, s]));
    assert.deepEqual(new Set(byId.keys()), new Set([created.id, running.id, exited.id]));
    const r = byId.get(running.id)!;
    assert.equal(r.attributes!.metadata!.name, 'running');
    assert.deepEqual(r.attributes!.annotations, { a: '1' });
    assert.deepEqual(r.cpu!.usageCoreNanoSeconds, { value: '2500000000' });
    assert.equal(r.cpu!.usageNanoCores, undefined, 'a rate needs two samples');
    assert.deepEqual(r.memory!.workingSetBytes, { value: String(2048 * 1024) });
    assert.equal(r.memory!.availableBytes, undefined, 'no limit is enforced, nothing is "available"');
    assert.ok(BigInt(String(r.cpu!.timestamp)) > 0n && BigInt(String(r.memory!.timestamp)) > 0n);
    assert.ok(Number(r.writableLayer!.usedBytes!.value) >= 10000, 'the file the container wrote is in its writable layer');
    assert.equal(r.writableLayer!.inodesUsed!.value, '3');
    assert.equal(r.writableLayer!.fsId!.mountpoint, b.ctx.dirs.snapshots);
    for (const id of [created.id, exited.id]) {
      const s = byId.get(id)!;
      assert.ok(BigInt(String(s.cpu!.timestamp)) > 0n);
      assert.equal(s.cpu!.usageCoreNanoSeconds, undefined);
      assert.equal(s.memory!.workingSetBytes, undefined);
    }
  });

  test('filters by id prefix, pod and labels', async () => {
    const b = await bed();
    const p1 = await b.pod('p1');
    const p2 = await b.pod('p2');
    const a = await b.container('aaa', 'CONTAINER_RUNNING', p1.id, { foo: 'bar' });
    const c = await b.container('ccc', 'CONTAINER_CREATED', p2.id, { foo: 'baz' });
    const ids = async (filter: unknown): Promise<string[]> => (await call(listContainerStats, { filter }, b.ctx)).stats!.map((s) => s.attributes!.id!).sort();
    assert.deepEqual(await ids({ id: 'aa' }), [a.id]);
    assert.deepEqual(await ids({ podSandboxId: p2.id.slice(0, 6) }), [c.id]);
    assert.deepEqual(await ids({ labelSelector: { foo: 'bar' } }), [a.id]);
    assert.deepEqual(await ids({ labelSelector: { foo: 'nope' } }), []);
    assert.deepEqual(await ids({}), [a.id, c.id].sort());
  });

  test('ContainerStats names what is missing or unknown', async () => {
    const b = await bed();
    assert.ok(isCode(await rejection(call(containerStats, { containerId: '' }, b.ctx)), 'InvalidArgument'));
    assert.ok(isCode(await rejection(call(containerStats, { containerId: 'nosuch' }, b.ctx)), 'NotFound'));
    const pod = await b.pod('p1');
    const r = await b.container('one', 'CONTAINER_RUNNING', pod.id);
    await fakeProc(b.proc, [{ pid: 10, ppid: 1, root: r.rootfs, utime: 1 }]);
    const s = await call(containerStats, { containerId: r.id.slice(0, 8) }, b.ctx);
    assert.equal(s.stats!.attributes!.id, r.id);
    assert.deepEqual(s.stats!.cpu!.usageCoreNanoSeconds, { value: '10000000' });
  });
});

describe('ListPodSandboxStats and PodSandboxStats', () => {
  test("sums the pod's running containers, counts its processes, and reads its eth0 from a process in it", async () => {
    const b = await bed();
    const pod = await b.pod('web', { app: 'web' });
    await b.pod('other', { app: 'other' });
    const c1 = await b.container('c1', 'CONTAINER_RUNNING', pod.id);
    const c2 = await b.container('c2', 'CONTAINER_RUNNING', pod.id);
    await b.container('c3', 'CONTAINER_CREATED', pod.id);
    const net = netDevText([
      ['lo', 10, 1, 0, 0, 10, 1, 0, 0],
      ['eth0', 5000, 40, 1, 0, 3000, 30, 2, 0],
    ]);
    await fakeProc(b.proc, [
      { pid: 10, ppid: 1, root: c1.rootfs, utime: 100, pssKb: 1000, netDev: net },
      { pid: 11, ppid: 10, root: c1.rootfs, utime: 50, pssKb: 1000, netDev: net },
      { pid: 20, ppid: 1, root: c2.rootfs, utime: 100, pssKb: 1000, netDev: net },
    ]);
    const res = await call(listPodSandboxStats, { filter: { labelSelector: { app: 'web' } } }, b.ctx);
    assert.equal(res.stats!.length, 1);
    const s = res.stats![0]!;
    assert.equal(s.attributes!.id, pod.id);
    assert.equal(s.attributes!.metadata!.name, 'web');
    const l = s.linux!;
    assert.deepEqual(l.cpu!.usageCoreNanoSeconds, { value: '2500000000' });
    assert.deepEqual(l.memory!.workingSetBytes, { value: String(3000 * 1024) });
    assert.deepEqual(l.process!.processCount, { value: '3' });
    assert.equal(l.network!.defaultInterface!.name, 'eth0');
    assert.deepEqual(l.network!.defaultInterface!.rxBytes, { value: '5000' });
    assert.deepEqual(l.network!.defaultInterface!.txErrors, { value: '2' });
    assert.deepEqual(
      l.network!.interfaces!.map((i) => i.name),
      ['eth0'],
      'loopback is left out',
    );
    assert.equal(l.containers!.length, 3);
    const one = await call(podSandboxStats, { podSandboxId: pod.id.slice(0, 5) }, b.ctx);
    assert.equal(one.stats!.attributes!.id, pod.id);
    assert.ok(isCode(await rejection(call(podSandboxStats, { podSandboxId: 'nosuch' }, b.ctx)), 'NotFound'));
  });

  test("a pod whose interfaces cannot be read has no network stats, never a network without its default interface (kubelet 1.37 panics on that)", async () => {
    const b = await bed();
    const pod = await b.pod('unread');
    await b.ctx.pods.store.update({ ...pod, network: { ip: '10.88.0.8', additionalIps: [], cniResult: { cniVersion: '1.0.0', interfaces: [{ name: 'veth9999' }, { name: 'eth0', sandbox: '/x' }] } } });
    await mkdir(join(b.proc, 'self', 'net'), { recursive: true });
    await writeFile(join(b.proc, 'self', 'net', 'dev'), netDevText([]));
    const s = (await call(podSandboxStats, { podSandboxId: pod.id }, b.ctx)).stats!;
    assert.equal(s.linux!.network, undefined);
    assert.ok(s.linux!.memory, 'the rest of the stats are there');
  });

  test('a pod with nothing running counts its traffic at the host end of its veth, the other way round', async () => {
    const b = await bed();
    const pod = await b.pod('idle');
    await b.ctx.pods.store.update({ ...pod, network: { ip: '10.88.0.9', additionalIps: [], cniResult: { cniVersion: '1.0.0', interfaces: [{ name: 'usernode0' }, { name: 'veth1234' }, { name: 'eth0', sandbox: '/x' }] } } });
    await mkdir(join(b.proc, 'self', 'net'), { recursive: true });
    await writeFile(join(b.proc, 'self', 'net', 'dev'), netDevText([['veth1234', 700, 7, 0, 0, 900, 9, 0, 0]]));
    const s = (await call(podSandboxStats, { podSandboxId: pod.id }, b.ctx)).stats!;
    assert.deepEqual(s.linux!.network!.defaultInterface!.rxBytes, { value: '900' });
    assert.deepEqual(s.linux!.network!.defaultInterface!.txBytes, { value: '700' });
    assert.deepEqual(s.linux!.process!.processCount, { value: '0' });
  });
});

describe('ReopenContainerLog', () => {
  test('asks the monitor of a running container; a container that does not run is a failed precondition', async () => {
    const b = await bed();
    const pod = await b.pod('p');
    const run = await b.container('run', 'CONTAINER_RUNNING', pod.id);
    const made = await b.container('made', 'CONTAINER_CREATED', pod.id);
    const gone = await b.container('gone', 'CONTAINER_EXITED', pod.id);
    await call(reopenContainerLog, { containerId: run.id }, b.ctx);
    assert.deepEqual(b.reopened, [{ bundle: run.bundle, logPath: run.logPath }]);
    for (const r of [made, gone]) {
      const e = await rejection(call(reopenContainerLog, { containerId: r.id }, b.ctx));
      assert.ok(isCode(e, 'FailedPrecondition'), String(e));
      assert.match(String(e), /not running/);
    }
    assert.ok(isCode(await rejection(call(reopenContainerLog, { containerId: '' }, b.ctx)), 'InvalidArgument'));
  });

  test("conmon's control fifo gets a reopen message, and the call returns once the log is there again", async () => {
    const bundle = await fresh('bundle');
    const logPath = join(bundle, 'c.log');
    const monitor = new ConmonMonitor('/bin/false', '/bin/false', '/nonexistent');
    const noFifo = await rejection(monitor.reopenLog(bundle, logPath));
    assert.ok(isCode(noFifo, 'FailedPrecondition'), String(noFifo));
    const mk = spawn('mkfifo', [join(bundle, 'ctl')]);
    await new Promise((r) => mk.on('close', r));
    const noReader = await rejection(monitor.reopenLog(bundle, logPath));
    assert.ok(isCode(noReader, 'FailedPrecondition'), `with no conmon reading: ${String(noReader)}`);
    // A stand-in for conmon: holds the fifo open (read-write opens at once), reads one message, makes the new log.
    const fake = spawn('sh', ['-c', 'exec 3<>ctl; read line <&3; echo "$line" > got; : > c.log'], { cwd: bundle, stdio: 'ignore' });
    try {
      for (let i = 0; i < 500 && !existsSync(`/proc/${fake.pid}/fd/3`); i++) await new Promise((r) => setTimeout(r, 10));
      await monitor.reopenLog(bundle, logPath);
      assert.equal((await readFile(join(bundle, 'got'), 'utf8')).trim(), '2 0 0');
      assert.ok(existsSync(logPath));
    } finally {
      fake.kill('SIGKILL');
    }
  });
});

describe('ListMetricDescriptors and ListPodSandboxMetrics', () => {
  test('describes every cadvisor metric kubelet expects, each with help and label keys', async () => {
    const { descriptors } = await listMetricDescriptors();
    const names = descriptors!.map((d) => d.name!);
    assert.equal(new Set(names).size, names.length, 'a metric is described twice');
    for (const d of descriptors!) {
      assert.ok(d.help, `${d.name} has no help`);
      assert.deepEqual(d.labelKeys!.slice(0, 3), ['id', 'name', 'image'], d.name);
    }
    assert.deepEqual(
      expectedCadvisorNames.filter((n) => !names.includes(n)),
      [],
    );
  });

  test("sends a value for every measurable metric of a running container, labelled as described, and the pod's network", async () => {
    const b = await bed();
    const pod = await b.pod('p1');
    const run = await b.container('run', 'CONTAINER_RUNNING', pod.id);
    await b.container('made', 'CONTAINER_CREATED', pod.id);
    // What runc was given (a host with a delegated cgroup): the spec metrics say it.
    await writeFile(join(run.bundle, 'config.json'), JSON.stringify({ linux: { resources: { cpu: { period: 100000, quota: 20000, shares: 1024 }, memory: { limit: 67108864 } } } }));
    const net = netDevText([['eth0', 5000, 40, 1, 0, 3000, 30, 2, 0]]);
    await fakeProc(b.proc, [{ pid: 10, ppid: 1, root: run.rootfs, utime: 250, pssKb: 2048, netDev: net, fds: ['/dev/null', 'socket:[1]', 'socket:[2]'] }]);
    const { descriptors } = await listMetricDescriptors();
    const keys = new Map(descriptors!.map((d) => [d.name!, d.labelKeys!]));
    const res = await call(listPodSandboxMetrics, {}, b.ctx);
    const p = res.podMetrics!.find((m) => m.podSandboxId === pod.id)!;
    assert.equal(p.containerMetrics!.length, 1, 'only the running container has metrics');
    const all = [...p.metrics!, ...p.containerMetrics![0]!.metrics!];
    for (const m of all) assert.equal(m.labelValues!.length, keys.get(m.name!)?.length, `${m.name}: label values and keys differ`);
    const value = (name: string, ...labels: string[]): string | undefined => {
      const v = all.find((m) => m.name === name && labels.every((l) => m.labelValues!.includes(l)))?.value?.value;
      return v === undefined ? undefined : String(v);
    };
    assert.equal(value('container_cpu_usage_seconds_total', 'total'), '2');
    assert.equal(value('container_memory_working_set_bytes', run.id), String(2048 * 1024));
    assert.equal(value('container_file_descriptors'), '3');
    assert.equal(value('container_sockets'), '2');
    assert.equal(value('container_processes'), '1');
    assert.equal(value('container_spec_cpu_period'), '100000');
    assert.equal(value('container_spec_memory_limit_bytes'), '67108864');
    assert.equal(value('container_spec_memory_swap_limit_bytes'), '0');
    assert.equal(value('container_network_receive_bytes_total', pod.id, 'eth0'), '5000');
    assert.equal(value('container_network_transmit_errors_total', 'eth0'), '2');
    assert.ok(Number(value('container_fs_usage_bytes')) >= 10000);
    const measured = new Set(all.map((m) => m.name));
    const unmeasured = [...keys.keys()].filter((n) => !measured.has(n));
    assert.deepEqual(unmeasured.sort(), ['container_blkio_device_usage_total', 'container_fs_reads_bytes_total', 'container_fs_reads_total', 'container_fs_writes_bytes_total', 'container_fs_writes_total']);
  });
});
