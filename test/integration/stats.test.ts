import assert from 'node:assert/strict';
import { readFile, rename, stat } from 'node:fs/promises';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';

import * as grpc from '@grpc/grpc-js';

import { criClients, type CriClients } from '../../proto/client.js';
import type { ContainerStats__Output } from '../../proto/generated/runtime/v1/ContainerStats.js';
import type { ListMetricDescriptorsResponse__Output } from '../../proto/generated/runtime/v1/ListMetricDescriptorsResponse.js';
import type { ListPodSandboxMetricsResponse__Output } from '../../proto/generated/runtime/v1/ListPodSandboxMetricsResponse.js';
import type { PodSandboxStats__Output } from '../../proto/generated/runtime/v1/PodSandboxStats.js';
import { type AgentProcess, createContainer, eventually, sleep, startBusyboxPod, type TestNode } from '../lib/agent.js';

// Stats and log rotation end to end: the real agent as this user, real
// containers under conmon in a pod on the bridge. On these hosts there is no
// delegated cgroup, so the numbers come from the processes' own accounting;
// the test checks they move the way the work done inside says they must.

type Callback<T> = (err: grpc.ServiceError | null, res?: T) => void;
const call = <T>(invoke: (cb: Callback<T>) => unknown): Promise<T> =>
  new Promise<T>((resolve, reject) => invoke((err, res) => (err || res === undefined ? reject(err ?? new Error('empty response')) : resolve(res))));
const n = (v: { value: string } | null | undefined): bigint => BigInt(v?.value ?? '-1');

describe('usernode stats and log reopening', () => {
  let node: TestNode;
  let agent: AgentProcess;
  let cri: CriClients;
  let pod: string;
  let podFile: string;
  let busybox: string;

  const create = (name: string, command: string[], labels: Record<string, string> = {}): Promise<string> =>
    createContainer(node, pod, podFile, { metadata: { name }, image: { image: busybox }, command, labels, log_path: `${name}.log`, linux: {} });
  const start = async (id: string): Promise<void> => assert.equal((await node.crictl(['start', id])).code, 0);
  const stats = (id: string): Promise<ContainerStats__Output> => call<{ stats: ContainerStats__Output | null }>((cb) => cri.runtime.ContainerStats({ containerId: id }, cb)).then((r) => r.stats!);
  const podStats = (): Promise<PodSandboxStats__Output> => call<{ stats: PodSandboxStats__Output | null }>((cb) => cri.runtime.PodSandboxStats({ podSandboxId: pod }, cb)).then((r) => r.stats!);

  before(async () => {
    ({ node, agent, busybox, pod, podFile } = await startBusyboxPod((dir) => ({ metadata: { name: 'stats', namespace: 'default', uid: 'stats-uid', attempt: 0 }, labels: { app: 'stats' }, log_directory: join(dir, 'logs'), linux: {} })));
    cri = criClients(node.socket);
  });

  after(async () => {
    cri?.close();
    agent?.child.kill('SIGTERM');
    await node?.destroy();
  });

  it("reports a running container's CPU, memory and writable layer as the work inside makes them, and a rate from two samples", async () => {
    // Burns some CPU, holds a file of 8 MiB in /tmp (the writable layer), then waits.
    const id = await create('worker', ['sh', '-c', 'i=0; while [ $i -lt 100000 ]; do i=$((i+1)); done; head -c 8388608 /dev/zero > /tmp/blob; echo ready; sleep 300']);
    await start(id);
    await eventually('the worker to be ready', async () => ((await node.crictl(['logs', id])).stdout.includes('ready') ? true : undefined), 60000);
    const s1 = await stats(id);
    assert.equal(s1.attributes!.id, id);
    assert.equal(s1.attributes!.metadata!.name, 'worker');
    assert.ok(n(s1.cpu!.usageCoreNanoSeconds) > 0n, 'no CPU time for a loop of 100000');
    assert.ok(n(s1.memory!.workingSetBytes) > 0n);
    assert.ok(n(s1.memory!.rssBytes) > 0n);
    assert.ok(BigInt(s1.cpu!.timestamp) > 0n && BigInt(s1.memory!.timestamp) > 0n);
    assert.ok(n(s1.writableLayer!.usedBytes) >= 8388608n, `writable layer ${s1.writableLayer!.usedBytes?.value} B, less than the 8 MiB written`);
    assert.ok(n(s1.writableLayer!.inodesUsed) >= 2n);
    await sleep(1100);
    const s2 = await stats(id);
    assert.ok(s2.cpu!.usageNanoCores, 'no rate from the second sample');
    assert.ok(n(s2.cpu!.usageCoreNanoSeconds) >= n(s1.cpu!.usageCoreNanoSeconds), 'CPU time went backwards');

    // An exec'd command is a child of runc, not of the container's init: its CPU time, once a sample has
    // seen it, still counts after it ended (without a cgroup, a command that ends between two samples is not seen).
    const exec = node.crictl(['exec', '--sync', id, 'sh', '-c', 'i=0; while [ $i -lt 2000000 ]; do i=$((i+1)); done']);
    const seen = await eventually('the exec\'d loop in the stats', async () => {
      const u = n((await stats(id)).cpu!.usageCoreNanoSeconds);
      return u > n(s2.cpu!.usageCoreNanoSeconds) + 200_000_000n ? u : undefined;
    });
    const done = await exec;
    assert.equal(done.code, 0, done.stderr);
    const s3 = await stats(id);
    assert.ok(n(s3.cpu!.usageCoreNanoSeconds) >= seen, `CPU time fell from ${seen} to ${s3.cpu!.usageCoreNanoSeconds?.value} when the exec'd command ended`);
  });

  it('lists created and exited containers too, and filters by id, pod and labels', async () => {
    const made = await create('made', ['sleep', '300'], { kind: 'made' });
    const done = await create('done', ['true'], { kind: 'done' });
    await start(done);
    await eventually('the exit', async () => ((await node.crictl(['inspect', done])).stdout.includes('CONTAINER_EXITED') ? true : undefined));
    const list = (filter: unknown): Promise<ContainerStats__Output[]> => call<{ stats: ContainerStats__Output[] }>((cb) => cri.runtime.ListContainerStats({ filter } as never, cb)).then((r) => r.stats);
    const all = await list(null);
    for (const id of [made, done]) {
      const s = all.find((x) => x.attributes?.id === id);
      assert.ok(s, `${id} not listed`);
      assert.ok(BigInt(s.cpu!.timestamp) > 0n);
      assert.equal(s.cpu!.usageCoreNanoSeconds, null, 'a container that does not run has no CPU numbers');
    }
    assert.deepEqual(
      (await list({ labelSelector: { kind: 'made' } })).map((s) => s.attributes!.id),
      [made],
    );
    assert.deepEqual(
      (await list({ id: done.slice(0, 12) })).map((s) => s.attributes!.id),
      [done],
    );
    assert.equal((await list({ podSandboxId: pod })).length, all.filter((s) => s.attributes!.id !== '').length);
    assert.deepEqual(await list({ podSandboxId: 'f'.repeat(64) }), []);
  });

  it("reports the pod: its containers summed, its process count, and eth0's traffic in its own namespace", async () => {
    // Some traffic out of eth0: a connection attempt to the bridge's address.
    const talker = await create('talker', ['sh', '-c', 'wget -q -T 2 -O /dev/null http://10.88.0.1:9/ ; sleep 300']);
    await start(talker);
    const s = await eventually('eth0 traffic', async () => {
      const p = await podStats();
      return n(p.linux?.network?.defaultInterface?.txBytes) > 0n ? p : undefined;
    });
    assert.equal(s.attributes!.id, pod);
    assert.equal(s.attributes!.metadata!.name, 'stats');
    const l = s.linux!;
    assert.equal(l.network!.defaultInterface!.name, 'eth0');
    assert.ok(!l.network!.interfaces.some((i) => i.name === 'lo'));
    assert.ok(n(l.process!.processCount) >= 2n, 'the worker and the talker each run a process');
    assert.ok(n(l.cpu!.usageCoreNanoSeconds) > 0n);
    assert.ok(n(l.memory!.workingSetBytes) > 0n);
    assert.ok(l.containers.some((c) => c.attributes?.id === talker));
    const listed = await call<{ stats: PodSandboxStats__Output[] }>((cb) => cri.runtime.ListPodSandboxStats({ filter: { labelSelector: { app: 'stats' } } }, cb));
    assert.deepEqual(
      listed.stats.map((p) => p.attributes!.id),
      [pod],
    );
  });

  it('serves cadvisor-named metrics of the pod and its running containers, labelled as described', async () => {
    const { descriptors } = await call<ListMetricDescriptorsResponse__Output>((cb) => cri.runtime.ListMetricDescriptors({}, cb));
    const keys = new Map(descriptors.map((d) => [d.name, d.labelKeys]));
    const { podMetrics } = await call<ListPodSandboxMetricsResponse__Output>((cb) => cri.runtime.ListPodSandboxMetrics({}, cb));
    const mine = podMetrics.find((p) => p.podSandboxId === pod);
    assert.ok(mine, 'no metrics for the pod');
    const all = [...mine.metrics, ...mine.containerMetrics.flatMap((c) => c.metrics)];
    for (const m of all) assert.equal(m.labelValues.length, keys.get(m.name)?.length, `${m.name}: label values and keys differ`);
    const rx = mine.metrics.find((m) => m.name === 'container_network_receive_bytes_total' && m.labelValues.includes('eth0'));
    assert.ok(rx && BigInt(rx.value!.value) > 0n, 'no bytes received on eth0');
    const worker = mine.containerMetrics.find((c) => c.metrics.some((m) => m.name === 'container_processes'));
    assert.ok(worker, 'no container metrics');
    for (const name of ['container_memory_working_set_bytes', 'container_threads', 'container_file_descriptors', 'container_start_time_seconds']) {
      const m = worker.metrics.find((x) => x.name === name);
      assert.ok(m && BigInt(m.value!.value) > 0n, `${name} is missing or zero`);
    }
  });

  it('says where the numbers come from: the agent log once, and crictl info', async () => {
    const info = JSON.parse((await node.crictl(['info'])).stdout) as { stats?: { source: string; reason: string } };
    assert.match(info.stats?.source ?? '', /procfs|cgroup v2/);
    assert.equal(agent.log.match(/msg="container stats from/g)?.length, 1, agent.log.slice(-2000));
  });

  it('reopens the log after rotation: new output goes to a new file at the log path, none to the old one', async () => {
    const id = await create('chatty', ['sh', '-c', 'while true; do echo tick; sleep 0.2; done']);
    await start(id);
    const logPath = join(node.dir, 'logs', 'chatty.log');
    await eventually('output in the log', async () => ((await readFile(logPath, 'utf8').catch(() => '')).includes('tick') ? true : undefined));
    await rename(logPath, `${logPath}.1`);
    await call((cb) => cri.runtime.ReopenContainerLog({ containerId: id }, cb));
    await stat(logPath);
    await eventually('output in the new log', async () => ((await readFile(logPath, 'utf8')).split('\n').filter((l) => l.includes('tick')).length >= 2 ? true : undefined));
    const oldSize = (await stat(`${logPath}.1`)).size;
    await eventually('more output in the new log', async () => ((await readFile(logPath, 'utf8')).split('\n').filter((l) => l.includes('tick')).length >= 6 ? true : undefined));
    assert.equal((await stat(`${logPath}.1`)).size, oldSize, 'the rotated log still grows');

    assert.equal((await node.crictl(['stop', '-t', '0', id])).code, 0);
    const e = await call((cb) => cri.runtime.ReopenContainerLog({ containerId: id }, cb)).then(
      () => assert.fail('reopening the log of a stopped container succeeded'),
      (err: grpc.ServiceError) => err,
    );
    assert.equal(e.code, grpc.status.FAILED_PRECONDITION);
    assert.match(e.details, /not running/);
  });
});
