import assert from 'node:assert/strict';
import { existsSync } from 'node:fs';
import { readdir, readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';

import * as grpc from '@grpc/grpc-js';
import { Metadata } from '@grpc/grpc-js';

import { criClients } from '../../proto/client.js';
import { type AgentProcess, eventually, requiredEnv, sleep, TestNode } from '../lib/agent.js';
import { FakeRegistry, layerOf } from '../lib/fake_registry.js';

// Requests that race, with the real agent: each pair ends in one consistent
// outcome a user can rely on. Two RunPodSandbox of one name: one pod, the
// other ALREADY_EXISTS, nothing leaked. CreateContainer racing
// StopPodSandbox / RemovePodSandbox of its pod: the container is there (and
// the pod's stop took it down) or it was undone and FAILED_PRECONDITION /
// NOT_FOUND answered, with no record, rootfs or process left. RemoveImage
// racing a pull or a create that uses its layers: whatever says it succeeded
// can run a container. Two pulls of one image, the first cancelled: the
// second completes, from one fetch.

interface Bed {
  registry: string;
  images: Record<string, { reference: string; layers: Array<{ diffId: string }> }>;
}

type Unary<Req, Res> = (req: Req, md: grpc.Metadata, opts: grpc.CallOptions, cb: (e: grpc.ServiceError | null, r?: Res) => void) => grpc.ClientUnaryCall;

describe('usernode under concurrent requests: names, pods, images', () => {
  let node: TestNode;
  let agent: AgentProcess;
  let cri: ReturnType<typeof criClients>;
  let fake: FakeRegistry;
  let bed: Bed;
  let busybox = '';
  let seq = 0;

  /** One CRI call; resolves with the response or the gRPC error (never rejects), and the call for cancel(). */
  function call<Req, Res>(client: grpc.Client, method: string, req: Req): { done: Promise<{ ok: Res } | { err: grpc.ServiceError }>; call: grpc.ClientUnaryCall } {
    let c!: grpc.ClientUnaryCall;
    const done = new Promise<{ ok: Res } | { err: grpc.ServiceError }>((resolve) => {
      const f = (client as unknown as Record<string, Unary<Req, Res>>)[method]!.bind(client);
      c = f(req, new Metadata(), { deadline: Date.now() + 120000 }, (e, r) => resolve(e ? { err: e } : { ok: r as Res }));
    });
    return { done, call: c };
  }
  const rt = <Res>(method: string, req: unknown) => call<unknown, Res>(cri.runtime as unknown as grpc.Client, method, req).done;
  const im = <Res>(method: string, req: unknown) => call<unknown, Res>(cri.image as unknown as grpc.Client, method, req).done;
  const must = async <Res>(p: Promise<{ ok: Res } | { err: grpc.ServiceError }>, what: string): Promise<Res> => {
    const r = await p;
    if ('err' in r) assert.fail(`${what}: ${r.err.code} ${r.err.details}`);
    return r.ok;
  };
  const codeName = (r: { ok: unknown } | { err: grpc.ServiceError }): string =>
    'err' in r ? (['OK', 'CANCELLED', 'UNKNOWN', 'INVALID_ARGUMENT', 'DEADLINE_EXCEEDED', 'NOT_FOUND', 'ALREADY_EXISTS', 'PERMISSION_DENIED', 'RESOURCE_EXHAUSTED', 'FAILED_PRECONDITION'][r.err.code] ?? String(r.err.code)) + `: ${r.err.details}` : 'OK';

  const podConfig = (name: string): Record<string, unknown> => ({
    metadata: { name, namespace: 'race', uid: `uid-${name}`, attempt: 0 },
    logDirectory: join(node.dir, 'logs', name),
    linux: {},
  });
  const runPod = async (name: string): Promise<string> => (await must(rt<{ podSandboxId: string }>('RunPodSandbox', { config: podConfig(name) }), `RunPodSandbox ${name}`)).podSandboxId;
  const containerConfig = (name: string, image: string, args: string[] = ['sleep', '3600']): Record<string, unknown> => ({
    metadata: { name, attempt: 0 },
    image: { image },
    command: args,
    logPath: `${name}.log`,
  });
  const removePod = async (id: string): Promise<void> => {
    await must(rt('StopPodSandbox', { podSandboxId: id }), 'StopPodSandbox');
    await must(rt('RemovePodSandbox', { podSandboxId: id }), 'RemovePodSandbox');
  };
  const containersOf = async (pod: string): Promise<Array<{ id: string; state: string }>> =>
    (await must(rt<{ containers: Array<{ id: string; state: string }> }>('ListContainers', { filter: { podSandboxId: pod } }), 'ListContainers')).containers;
  const dataDir = (): string => join(node.dir, 'data', 'usernode');
  /** What a pod or a container could leave behind: records, netns mounts, container rootfs folders and overlay mounts. */
  const leftovers = async (): Promise<{ sandboxes: number; containers: number; rootfs: number; nsMounts: number; overlays: number }> => {
    const count = async (d: string): Promise<number> => (existsSync(d) ? (await readdir(d)).filter((n) => /^[a-f0-9]{64}(\.json)?$/.test(n)).length : 0);
    const mounts = await node.enter(['cat', '/proc/self/mountinfo']);
    return {
      sandboxes: await count(join(dataDir(), 'pods', 'sandboxes')),
      containers: await count(join(dataDir(), 'pods', 'containers')),
      rootfs: await count(join(dataDir(), 'snapshots', 'containers')),
      nsMounts: mounts.stdout.split('\n').filter((l) => l.includes(join(node.runtimeDir, 'netns'))).length,
      overlays: mounts.stdout.split('\n').filter((l) => l.includes(join(dataDir(), 'snapshots', 'containers'))).length,
    };
  };
  const zero = { sandboxes: 0, containers: 0, rootfs: 0, nsMounts: 0, overlays: 0 };

  before(async () => {
    bed = JSON.parse(await readFile(requiredEnv('USERNODE_TEST_IMAGES'), 'utf8')) as Bed;
    busybox = `${bed.registry}/usernode/busybox:latest`;
    fake = new FakeRegistry();
    await fake.listen(bed.registry.split(':')[0]!.replace(/\.\d+$/, '.1'));
    node = await TestNode.create();
    await node.writeConfig(`registries:\n  "${bed.registry}": { plainHttp: true }\n  "${fake.address}": { plainHttp: true }\n`);
    agent = node.start();
    await agent.ready();
    cri = criClients(node.socket);
    await must(im('PullImage', { image: { image: busybox } }), 'pull busybox');
  });

  after(async () => {
    cri?.close();
    agent?.child.kill('SIGTERM');
    await node?.destroy();
    await fake?.close();
  });

  it('two RunPodSandbox of one name at once: one pod, the other ALREADY_EXISTS; nothing leaked', async () => {
    for (let round = 0; round < 4; round++) {
      const name = `twin-${round}`;
      const [a, b] = await Promise.all([rt<{ podSandboxId: string }>('RunPodSandbox', { config: podConfig(name) }), rt<{ podSandboxId: string }>('RunPodSandbox', { config: podConfig(name) })]);
      const outcomes = [codeName(a), codeName(b)];
      assert.equal(outcomes.filter((o) => o === 'OK').length, 1, `round ${round}: ${outcomes.join(' | ')}`);
      assert.ok(outcomes.some((o) => o.startsWith('ALREADY_EXISTS')), `round ${round}: ${outcomes.join(' | ')}`);
      const listed = (await must(rt<{ items: Array<{ id: string; metadata: { name: string } }> }>('ListPodSandbox', {}), 'ListPodSandbox')).items.filter((p) => p.metadata.name === name);
      assert.equal(listed.length, 1);
      await removePod(listed[0]!.id);
    }
    assert.deepEqual(await leftovers(), zero);
  });

  it('CreateContainer racing StopPodSandbox of its pod: made before the stop (and stopped with it) or undone with FAILED_PRECONDITION', async () => {
    const seen = new Set<string>();
    for (let round = 0; round < 4; round++) {
      const pod = await runPod(`stop-race-${round}`);
      const creating = rt<{ containerId: string }>('CreateContainer', { podSandboxId: pod, config: containerConfig('c', busybox), sandboxConfig: podConfig(`stop-race-${round}`) });
      await sleep(round * 40);
      await must(rt('StopPodSandbox', { podSandboxId: pod }), 'StopPodSandbox');
      const created = await creating;
      const listed = await containersOf(pod);
      seen.add(codeName(created).split(':')[0]!);
      if ('ok' in created) {
        assert.deepEqual(listed.map((c) => c.id), [created.ok.containerId]);
        assert.notEqual(listed[0]!.state, 'CONTAINER_RUNNING');
      } else {
        assert.equal(created.err.code, 9, `FAILED_PRECONDITION, not ${codeName(created)}`);
        assert.deepEqual(listed, [], 'no container record of an undone create');
      }
      await must(rt('RemovePodSandbox', { podSandboxId: pod }), 'RemovePodSandbox');
    }
    assert.deepEqual(await leftovers(), zero, `outcomes seen: ${[...seen].join(', ')}`);
  });

  it('CreateContainer racing RemovePodSandbox of its pod: no container outlives its pod, nothing leaked', async () => {
    for (let round = 0; round < 4; round++) {
      const pod = await runPod(`remove-race-${round}`);
      const creating = rt<{ containerId: string }>('CreateContainer', { podSandboxId: pod, config: containerConfig('c', busybox), sandboxConfig: podConfig(`remove-race-${round}`) });
      await sleep(round * 40);
      await must(rt('RemovePodSandbox', { podSandboxId: pod }), 'RemovePodSandbox');
      const created = await creating;
      if ('err' in created) assert.ok(created.err.code === 9 || created.err.code === 5, `FAILED_PRECONDITION or NOT_FOUND, not ${codeName(created)}`);
      else {
        // Made before the removal began: the removal took it with the pod.
        const status = await rt('ContainerStatus', { containerId: created.ok.containerId });
        assert.equal('err' in status && status.err.code, 5, 'the container went with its pod');
      }
      assert.deepEqual(await containersOf(pod), []);
    }
    assert.deepEqual(await leftovers(), zero);
  });

  it('RemoveImage racing CreateContainer of that image: a container that was created starts and runs', async () => {
    for (let round = 0; round < 3; round++) {
      await must(im('PullImage', { image: { image: busybox } }), 'pull busybox');
      const pod = await runPod(`rmi-create-${round}`);
      const creating = rt<{ containerId: string }>('CreateContainer', { podSandboxId: pod, config: containerConfig('c', busybox, ['sh', '-c', 'cat /bin/busybox >/dev/null && echo ran']), sandboxConfig: podConfig(`rmi-create-${round}`) });
      await sleep(round * 30);
      await must(im('RemoveImage', { image: { image: busybox } }), 'RemoveImage');
      const created = await creating;
      if ('ok' in created) {
        await must(rt('StartContainer', { containerId: created.ok.containerId }), 'StartContainer of a container whose image was removed meanwhile');
        const exited = await eventually('the container to exit', async () => {
          const s = (await must(rt<{ status: { state: string; exitCode: number } }>('ContainerStatus', { containerId: created.ok.containerId }), 'ContainerStatus')).status;
          return s.state === 'CONTAINER_EXITED' ? s : undefined;
        });
        assert.equal(exited.exitCode, 0, 'its rootfs was whole');
      } else {
        assert.equal(created.err.code, 5, `NOT_FOUND, not ${codeName(created)}`);
      }
      await removePod(pod);
    }
    await must(im('PullImage', { image: { image: busybox } }), 'pull busybox again');
    assert.deepEqual(await leftovers(), zero);
  });

  it('RemoveImage of an image racing the pull of another that shares its layer: the pulled image runs', async () => {
    // Two test images with one layer (one chain id) in common, fetched from different blobs.
    const byDiff = new Map<string, string[]>();
    for (const [ref, e] of Object.entries(bed.images)) {
      if (e.layers.length !== 1 || !ref.startsWith(bed.registry)) continue;
      byDiff.set(e.layers[0]!.diffId, [...(byDiff.get(e.layers[0]!.diffId) ?? []), ref]);
    }
    const pair = [...byDiff.values()].find((refs) => refs.includes(busybox) && refs.length > 1);
    assert.ok(pair, `no test image shares busybox's only layer: ${JSON.stringify([...byDiff.values()])}`);
    const other = pair.find((r) => r !== busybox)!;
    for (let round = 0; round < 4; round++) {
      await must(im('PullImage', { image: { image: busybox } }), 'pull busybox');
      const pulling = im<{ imageRef: string }>('PullImage', { image: { image: other } });
      await sleep(round * 15);
      await must(im('RemoveImage', { image: { image: busybox } }), 'RemoveImage busybox');
      await must(pulling, `pull ${other}`);
      const pod = await runPod(`rmi-pull-${round}`);
      const c = await must(rt<{ containerId: string }>('CreateContainer', { podSandboxId: pod, config: containerConfig('c', other, ['sh', '-c', 'cat /bin/busybox >/dev/null']), sandboxConfig: podConfig(`rmi-pull-${round}`) }), `create from ${other}`);
      await must(rt('StartContainer', { containerId: c.containerId }), `start from ${other}: its layer must be there`);
      const exited = await eventually('the container to exit', async () => {
        const s = (await must(rt<{ status: { state: string; exitCode: number } }>('ContainerStatus', { containerId: c.containerId }), 'ContainerStatus')).status;
        return s.state === 'CONTAINER_EXITED' ? s : undefined;
      });
      assert.equal(exited.exitCode, 0);
      await removePod(pod);
      await must(im('RemoveImage', { image: { image: other } }), 'RemoveImage other');
    }
    await must(im('PullImage', { image: { image: busybox } }), 'pull busybox again');
  });

  it('two pulls of one image share one fetch; the first cancelled, the second completes', async () => {
    const layer = await layerOf({ 'etc/shared-pull': `round ${seq++}` });
    const { layerDigests } = await fake.addImage('race/shared', 'v1', [layer]);
    let release!: () => void;
    fake.fault(layerDigests[0]!, { kind: 'hold', release: new Promise<void>((r) => (release = r)) });
    const ref = `${fake.address}/race/shared:v1`;
    const first = call<unknown, { imageRef: string }>(cri.image as unknown as grpc.Client, 'PullImage', { image: { image: ref } });
    const second = call<unknown, { imageRef: string }>(cri.image as unknown as grpc.Client, 'PullImage', { image: { image: ref } });
    await eventually('the layer fetch to start', async () => ((fake.served.get(layerDigests[0]!) ?? 0) > 0 ? true : undefined));
    await sleep(200);
    first.call.cancel();
    const one = await first.done;
    assert.equal('err' in one && one.err.code, 1, `the first caller's pull is CANCELLED: ${codeName(one)}`);
    await sleep(200);
    release();
    const two = await second.done;
    assert.ok('ok' in two, `the second pull completes: ${codeName(two)}`);
    assert.equal(fake.served.get(layerDigests[0]!), 1, 'one fetch of the layer for both pulls');
    const status = await must(im<{ image: { id: string } | null }>('ImageStatus', { image: { image: ref } }), 'ImageStatus');
    assert.ok(status.image, 'the image is there');
    await must(im('RemoveImage', { image: { image: ref } }), 'RemoveImage');
  });
});
