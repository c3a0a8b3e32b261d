import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';

import type * as grpc from '@grpc/grpc-js';

import { criClients, type CriClients } from '../../proto/client.js';
import type { ContainerEventResponse__Output } from '../../proto/generated/runtime/v1/ContainerEventResponse.js';
import { type AgentProcess, eventually, nodeWithBusybox, requiredTool, type TestNode } from '../lib/agent.js';

// GetContainerEvents and UpdateContainerResources end to end: the real agent
// as this user, a real pod and a busybox container under conmon and runc.
// Two subscribers (a gRPC client and `crictl events`, as a user would run
// it) see the lifecycle of a pod and of a container that exits by itself,
// without anyone asking for its status; `crictl update` changes what
// `crictl inspect` reports, says it is not enforced on this host (no
// delegated cgroup v2), and bad values get INVALID_ARGUMENT naming the field.

interface Inspect {
  status: { state: string; resources?: { linux?: Record<string, unknown> } };
  info: { info?: { resourcesNotEnforced?: string }; resourcesNotEnforced?: string };
}

describe('usernode container events and resource updates', () => {
  let node: TestNode;
  let agent: AgentProcess;
  let busybox: string;
  let clients: CriClients;
  let stream: grpc.ClientReadableStream<ContainerEventResponse__Output>;
  const events: ContainerEventResponse__Output[] = [];
  let crictlEvents: ReturnType<typeof spawn> | undefined;
  let crictlOut = '';
  let pod = '';
  let podFile = '';

  const crictlOk = async (args: string[]): Promise<string> => {
    const r = await node.crictl(args);
    assert.equal(r.code, 0, `crictl ${args.join(' ')}: ${r.stderr}`);
    return r.stdout.trim();
  };
  const create = async (name: string, command: string[]): Promise<string> => {
    const f = join(node.dir, `ctr-${name}.json`);
    await writeFile(f, JSON.stringify({ metadata: { name }, image: { image: busybox }, command, log_path: `${name}/0.log`, linux: { resources: { cpu_period: 100000, cpu_quota: 50000 } } }));
    return crictlOk(['create', pod, f, podFile]);
  };
  const inspect = async (id: string): Promise<Inspect> => JSON.parse(await crictlOk(['inspect', id])) as Inspect;
  const eventOf = (id: string, type: string): Promise<ContainerEventResponse__Output> =>
    eventually(`${type} of ${id.slice(0, 12)}`, async () => events.find((e) => e.containerId === id && e.containerEventType === type), 60000);

  before(async () => {
    ({ node, agent, busybox } = await nodeWithBusybox());
    clients = criClients(node.socket);
    stream = clients.runtime.GetContainerEvents({});
    stream.on('data', (e: ContainerEventResponse__Output) => events.push(e));
    stream.on('error', () => {});
    const endpoint = `unix://${node.socket}`;
    crictlEvents = spawn(requiredTool('USERNODE_CRICTL'), ['--runtime-endpoint', endpoint, '--image-endpoint', endpoint, 'events', '-o', 'json'], { env: node.env, stdio: ['ignore', 'pipe', 'pipe'] });
    crictlEvents.stdout?.on('data', (d: Buffer) => (crictlOut += d.toString()));
    // Both are subscribed once a pod made now shows in both.
    const probeFile = join(node.dir, 'probe-pod.json');
    await writeFile(probeFile, JSON.stringify({ metadata: { name: 'probe', namespace: 'default', uid: 'probe-uid', attempt: 0 }, linux: {} }));
    const probe = await crictlOk(['runp', probeFile]);
    await eventually('crictl events to see the probe pod', async () => (crictlOut.includes(probe) ? true : undefined), 60000);
    await eventOf(probe, 'CONTAINER_STARTED_EVENT');
    await crictlOk(['rmp', '-f', probe]);
  });

  after(async () => {
    stream?.cancel();
    clients?.close();
    crictlEvents?.kill('SIGKILL');
    agent?.child.kill('SIGTERM');
    await node?.destroy();
  });

  it("streams a pod's and a self-exiting container's lifecycle to every subscriber, with the pod's and containers' statuses", async () => {
    podFile = join(node.dir, 'pod.json');
    await writeFile(podFile, JSON.stringify({ metadata: { name: 'evt', namespace: 'default', uid: 'evt-uid', attempt: 0 }, hostname: 'evt', log_directory: join(node.dir, 'logs'), linux: {} }));
    pod = await crictlOk(['runp', podFile]);
    const quitter = await create('quitter', ['sh', '-c', 'sleep 2; exit 3']);
    await crictlOk(['start', quitter]);
    // Nobody asks for its status: the exit watcher has to notice the exit.
    const stopped = await eventOf(quitter, 'CONTAINER_STOPPED_EVENT');
    const mine = stopped.containersStatuses.find((s) => s.id === quitter);
    assert.equal(mine?.state, 'CONTAINER_EXITED');
    assert.equal(mine?.exitCode, 3);
    assert.equal(stopped.podSandboxStatus?.id, pod);
    assert.equal(stopped.podSandboxStatus?.state, 'SANDBOX_READY');
    assert.ok(Number(stopped.createdAt) > 0);

    await crictlOk(['rm', quitter]);
    await crictlOk(['stopp', pod]);
    await crictlOk(['rmp', pod]);
    await eventOf(pod, 'CONTAINER_DELETED_EVENT');
    const seen = events.filter((e) => e.containerId === pod || e.containerId === quitter).map((e) => `${e.containerId === pod ? 'pod' : 'ctr'} ${e.containerEventType}`);
    assert.deepEqual(seen, [
      'pod CONTAINER_CREATED_EVENT',
      'pod CONTAINER_STARTED_EVENT',
      'ctr CONTAINER_CREATED_EVENT',
      'ctr CONTAINER_STARTED_EVENT',
      'ctr CONTAINER_STOPPED_EVENT',
      'ctr CONTAINER_DELETED_EVENT',
      'pod CONTAINER_STOPPED_EVENT',
      'pod CONTAINER_DELETED_EVENT',
    ]);
    await eventually('crictl events to show the same', async () => {
      const lines = crictlOut.split('\n');
      const has = (id: string, type: string): boolean => lines.some((l, i) => l.includes(id) && lines.slice(i, i + 4).join(' ').includes(type));
      return has(quitter, 'CONTAINER_STOPPED_EVENT') && has(pod, 'CONTAINER_DELETED_EVENT') ? true : undefined;
    }, 30000).catch(() => assert.fail(`crictl events did not show the lifecycle:\n${crictlOut.slice(-3000)}`));
  });

  it('UpdateContainerResources: crictl inspect shows the new values, says they are not enforced here; bad values name the field', async () => {
    pod = await crictlOk(['runp', podFile]);
    const id = await create('sleeper', ['sleep', '300']);
    await crictlOk(['start', id]);
    const before = await inspect(id);
    assert.equal(Number(before.status.resources?.linux?.cpuQuota), 50000, JSON.stringify(before.status.resources));

    await crictlOk(['update', '--cpu-quota', '200000', '--memory', String(256 * 1024 * 1024), id]);
    const s = await inspect(id);
    const linux = s.status.resources?.linux ?? {};
    assert.equal(Number(linux.cpuQuota), 200000);
    assert.equal(Number(linux.cpuPeriod), 100000, 'a field the update did not set lost its value');
    assert.equal(Number(linux.memoryLimitInBytes), 256 * 1024 * 1024);
    assert.equal(s.status.state, 'CONTAINER_RUNNING');
    const notEnforced = s.info.info?.resourcesNotEnforced ?? s.info.resourcesNotEnforced ?? '';
    assert.match(notEnforced, /cannot be enforced rootless/, JSON.stringify(s.info));
    assert.match(agent.log, /container resources recorded, not enforced rootless/);

    const bad = await node.crictl(['update', '--cpu-quota', '-5', id]);
    assert.notEqual(bad.code, 0);
    assert.match(bad.stderr, /InvalidArgument/);
    assert.match(bad.stderr, /linux\.cpu_quota/);
    assert.equal(Number((await inspect(id)).status.resources?.linux?.cpuQuota), 200000, 'a refused update changed the record');

    const missing = await node.crictl(['update', '--cpu-quota', '100000', 'f'.repeat(64)]);
    assert.notEqual(missing.code, 0);
    assert.match(missing.stderr, /NotFound/);
    await crictlOk(['rmp', '-f', pod]);
  });
});
