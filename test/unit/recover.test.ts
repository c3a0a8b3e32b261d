import assert from 'node:assert/strict';
import { mkdir, stat, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { describe, test } from 'node:test';

import type { ContainerRuntime } from '../../pkg/cri/containers.js';
import { reconcileContainer, unknownExitCode, unknownExitReason } from '../../pkg/cri/recover.js';
import { silentLogger } from '../../pkg/log/logger.js';
import { type ContainerRecord, ContainerStore } from '../../pkg/sandbox/container_store.js';
import type { RuntimeState } from '../../pkg/sandbox/oci_runtime.js';
import { containerRecord } from '../lib/records.js';
import { tempFolders } from '../lib/unit.js';

// A container's state after a restart of the runtime half (recover.ts): from
// conmon's exit file, and from runc when conmon is gone.

const folders = tempFolders('usernode-recover-');
const id = 'c'.repeat(64);

interface Bed {
  c: ContainerRuntime;
  exitDir: string;
  kills: string[];
  asked: { state: number };
}

async function bed(o: { monitorAlive: boolean; runc: RuntimeState | undefined; record: Partial<ContainerRecord> }): Promise<Bed> {
  const dir = await folders.fresh('bed');
  const exitDir = join(dir, 'exits');
  await mkdir(exitDir);
  const store = new ContainerStore(join(dir, 'records'));
  await store.init();
  await store.add(containerRecord({ id, sandboxId: 'p'.repeat(64), bundle: join(dir, 'bundle'), ...o.record }));
  const kills: string[] = [];
  const asked = { state: 0 };
  const c = {
    store,
    exitDir,
    cgroups: { canEnforceLimits: false },
    monitor: { alive: async () => o.monitorAlive },
    runtime: {
      state: async () => {
        asked.state++;
        return o.runc;
      },
      kill: async (_id: string, signal: string) => {
        kills.push(signal);
      },
    },
  } as unknown as ContainerRuntime;
  return { c, exitDir, kills, asked };
}

describe('container state after a restart', () => {
  test('running under a live conmon: adopted as is, runc not asked', async () => {
    const b = await bed({ monitorAlive: true, runc: { status: 'running', pid: 7 }, record: { state: 'CONTAINER_RUNNING', startedAt: '5' } });
    const r = await reconcileContainer(b.c.store.get(id), b.c, silentLogger);
    assert.equal(r.state, 'CONTAINER_RUNNING');
    assert.equal(b.asked.state, 0);
  });

  test('conmon gone, runc says running: the unmonitored process is killed, and the container exited with an unknown code', async () => {
    const b = await bed({ monitorAlive: false, runc: { status: 'running', pid: 7 }, record: { state: 'CONTAINER_RUNNING', startedAt: '5' } });
    const r = await reconcileContainer(b.c.store.get(id), b.c, silentLogger);
    assert.equal(r.state, 'CONTAINER_EXITED');
    assert.equal(r.exitCode, unknownExitCode);
    assert.equal(r.reason, unknownExitReason);
    assert.match(r.message, /conmon.*runc reported it running/);
    assert.deepEqual(b.kills, ['SIGKILL']);
    assert.equal(b.c.store.get(id).state, 'CONTAINER_EXITED', 'not written to the record');
  });

  test('conmon gone and its runtime folder wiped (runc knows nothing): exited, code unknown', async () => {
    const b = await bed({ monitorAlive: false, runc: undefined, record: { state: 'CONTAINER_RUNNING', startedAt: '5' } });
    const r = await reconcileContainer(b.c.store.get(id), b.c, silentLogger);
    assert.equal(r.state, 'CONTAINER_EXITED');
    assert.equal(r.exitCode, 255);
    assert.match(r.message, /runc does not know it/);
    assert.deepEqual(b.kills, []);
  });

  test('conmon gone after writing the exit file: its exit code, not an unknown one', async () => {
    const b = await bed({ monitorAlive: false, runc: { status: 'stopped', pid: 0 }, record: { state: 'CONTAINER_RUNNING', startedAt: '5' } });
    await writeFile(join(b.exitDir, id), '3');
    const r = await reconcileContainer(b.c.store.get(id), b.c, silentLogger);
    assert.equal(r.state, 'CONTAINER_EXITED');
    assert.equal(r.exitCode, 3);
    assert.equal(r.reason, 'Error');
  });

  test('CREATED record, runc says running (killed between runc start and the record update): adopted as RUNNING', async () => {
    const b = await bed({ monitorAlive: true, runc: { status: 'running', pid: process.pid }, record: { state: 'CONTAINER_CREATED' } });
    const r = await reconcileContainer(b.c.store.get(id), b.c, silentLogger);
    assert.equal(r.state, 'CONTAINER_RUNNING');
    assert.notEqual(r.startedAt, '0');
    assert.deepEqual(b.kills, []);
  });

  test('CREATED record, started and already exited before the restart: EXITED with its code', async () => {
    const b = await bed({ monitorAlive: false, runc: { status: 'stopped', pid: 0 }, record: { state: 'CONTAINER_CREATED' } });
    await writeFile(join(b.exitDir, id), '0');
    const r = await reconcileContainer(b.c.store.get(id), b.c, silentLogger);
    assert.equal(r.state, 'CONTAINER_EXITED');
    assert.equal(r.exitCode, 0);
    assert.equal(r.reason, 'Completed');
  });

  test('CREATED record, created under a live conmon: stays CREATED for StartContainer', async () => {
    const b = await bed({ monitorAlive: true, runc: { status: 'created', pid: 7 }, record: { state: 'CONTAINER_CREATED' } });
    const r = await reconcileContainer(b.c.store.get(id), b.c, silentLogger);
    assert.equal(r.state, 'CONTAINER_CREATED');
  });

  test('CREATED record whose conmon is gone: it can never be started with its output held; killed and exited', async () => {
    const b = await bed({ monitorAlive: false, runc: { status: 'created', pid: 7 }, record: { state: 'CONTAINER_CREATED' } });
    const r = await reconcileContainer(b.c.store.get(id), b.c, silentLogger);
    assert.equal(r.state, 'CONTAINER_EXITED');
    assert.equal(r.exitCode, 255);
    assert.deepEqual(b.kills, ['SIGKILL']);
  });
});

describe('the orphan sweep at start', () => {
  const podA = 'a'.repeat(64); // has a READY record and a host port
  const podB = 'b'.repeat(64); // left by a RunPodSandbox killed before its record: netns folder, files, lease
  const podC = 'e'.repeat(64); // only a lease left
  const ctrX = 'f'.repeat(64); // left by a CreateContainer killed before its record: bundle, snapshot, runc state
  const ctrY = '1'.repeat(64); // a RUNNING record whose conmon is gone
  const ctrZ = '2'.repeat(64); // only its pinned mount sources left

  test('releases what no record names through the release path of Stop/Remove, and adopts what the records name', async () => {
    const { recoverRuntime } = await import('../../pkg/cri/recover.js');
    const { SandboxStore } = await import('../../pkg/sandbox/sandbox_store.js');
    const { sandboxRecord } = await import('../lib/records.js');
    const dir = await folders.fresh('sweep');
    const d = (...p: string[]): string => join(dir, ...p);
    for (const f of ['netns', 'files', 'ipam', 'bundles', 'exits', 'attach', 'runc', 'snapshots/containers']) await mkdir(d(f), { recursive: true });
    for (const f of [d('netns', podB), d('files', podB), d('bundles', ctrX), d('runc', ctrX), d('snapshots/containers', ctrX), d('bundles', ctrY)]) await mkdir(f, { recursive: true });
    await writeFile(d('ipam', '10.88.0.5'), `${podA}\r\neth0`);
    await writeFile(d('ipam', '10.88.0.6'), `${podB}\r\neth0`);
    await writeFile(d('ipam', '10.88.0.7'), `${podC}\r\neth0`);
    await writeFile(d('ipam', 'last_reserved_ip.0'), '10.88.0.7');

    const sandboxes = new SandboxStore(d('sandboxes'));
    await sandboxes.init();
    await sandboxes.add(sandboxRecord({ id: podA, namespaces: { uts: d('netns', podA, 'uts') }, network: { ip: '10.88.0.5', additionalIps: [], cniResult: {}, hostPortForwards: [1] } }));
    const store = new ContainerStore(d('records'));
    await store.init();
    await store.add(containerRecord({ id: ctrY, sandboxId: podA, state: 'CONTAINER_RUNNING', startedAt: '5', bundle: d('bundles', ctrY) }));

    const calls: string[] = [];
    const forwards = [
      { id: 1, protocol: 'tcp' as const, hostIP: '0.0.0.0', hostPort: 8080, childIP: '10.88.0.5', childPort: 80 },
      { id: 2, protocol: 'tcp' as const, hostIP: '0.0.0.0', hostPort: 8081, childIP: '10.88.0.6', childPort: 80 },
      { id: 3, protocol: 'tcp' as const, hostIP: '127.0.0.1', hostPort: 9000, childIP: '127.0.0.1', childPort: 9000 },
    ];
    const pods = {
      store: sandboxes,
      podsDir: d('files'),
      namespaces: {
        paths: (id: string) => ({ net: d('netns', id, 'net'), ipc: d('netns', id, 'ipc'), uts: d('netns', id, 'uts'), user: d('netns', id, 'user') }),
        remove: async (id: string) => void calls.push(`netns remove ${id.slice(0, 1)}`),
        pidNamespaceAlive: async () => true,
        stopPidNamespace: async () => undefined,
      },
      cni: {
        del: async (a: { containerId: string; netns: string; portMappings: unknown[] }) => void calls.push(`cni del ${a.containerId.slice(0, 1)} netns=${a.netns === '' ? 'none' : 'yes'} portmap=${a.portMappings.length > 0}`),
        check: async () => undefined,
      },
      ports: {
        list: async () => forwards,
        remove: async (id: number) => void calls.push(`port remove ${id}`),
      },
    } as unknown as import('../../pkg/cri/pods.js').PodRuntime;
    const containers = {
      store,
      exitDir: d('exits'),
      socketDir: d('attach'),
      bundlesDir: d('bundles'),
      runcRoot: d('runc'),
      cgroups: { canEnforceLimits: false },
      monitor: { alive: async () => false },
      // Mount sources pinned for ctrX's create (the kill cut it short) and for ctrZ, of which nothing else is left.
      mountSources: { ids: async () => [ctrX, ctrZ], release: async (id: string) => void calls.push(`mounts release ${id.slice(0, 1)}`) },
      rootfs: { dir: (id: string) => d('snapshots/containers', id), remove: async (id: string) => void calls.push(`rootfs remove ${id.slice(0, 1)}`) },
      runtime: {
        state: async () => undefined,
        kill: async () => undefined,
        delete: async (id: string) => void calls.push(`runc delete ${id.slice(0, 1)}`),
      },
    } as unknown as ContainerRuntime;

    const report = await recoverRuntime({ pods, containers, log: silentLogger, podCIDR: '10.88.0.0/16', ipamDir: d('ipam'), settleMs: 1000 });

    assert.equal(sandboxes.get(podA).state, 'SANDBOX_READY', 'a healthy pod is adopted');
    assert.equal(store.get(ctrY).state, 'CONTAINER_EXITED');
    assert.equal(store.get(ctrY).reason, 'Unknown');
    assert.deepEqual(calls.filter((c) => c.startsWith('runc delete') || c.startsWith('rootfs')).sort(), ['rootfs remove 2', 'rootfs remove f', 'runc delete 2', 'runc delete f']);
    assert.deepEqual(calls.filter((c) => c.startsWith('mounts release')).sort(), ['mounts release 2', 'mounts release f'], 'pinned mount sources no record names are released');
    assert.ok(calls.includes('cni del b netns=none portmap=true'), `the leftover pod's lease, NAT rules: ${calls.join('; ')}`);
    assert.ok(calls.includes('cni del e netns=none portmap=true'), `a lease alone: ${calls.join('; ')}`);
    assert.ok(calls.includes('netns remove b'));
    assert.ok(!calls.some((c) => c.includes(' a ') || c.endsWith(' a')), `the adopted pod was touched: ${calls.join('; ')}`);
    assert.deepEqual(calls.filter((c) => c.startsWith('port')), ['port remove 2'], 'only the forward no READY pod owns goes; the streaming forward stays');
    assert.equal(report.podsReleased, 2);
    assert.equal(report.containersReleased, 2);
    assert.equal(report.containersExited, 1);
    await assert.rejects(stat(d('files', podB)), 'the leftover pod files stay');
    await assert.rejects(stat(d('bundles', ctrX)), 'the leftover bundle stays');
  });
});

describe('the orphan sweep and records moved aside', () => {
  test('what a record moved aside (unparsable) names is left as it is; a leftover no record names is released', async () => {
    const { recoverRuntime } = await import('../../pkg/cri/recover.js');
    const { SandboxStore } = await import('../../pkg/sandbox/sandbox_store.js');
    const { movedAsideRecords } = await import('../../pkg/store/json_records.js');
    const kept = '3'.repeat(64); // its record did not parse: its bundle, lease and netns folder stay
    const gone = '4'.repeat(64); // nothing names it: released
    const dir = await folders.fresh('aside');
    const d = (...p: string[]): string => join(dir, ...p);
    for (const f of ['netns', 'files', 'ipam', 'exits', 'attach', 'runc', 'snapshots/containers']) await mkdir(d(f), { recursive: true });
    for (const f of [d('bundles', kept), d('bundles', gone), d('netns', kept)]) await mkdir(f, { recursive: true });
    await writeFile(d('ipam', '10.88.0.9'), `${kept}\r\neth0`);
    const sandboxes = new SandboxStore(d('sandboxes'));
    await sandboxes.init();
    const store = new ContainerStore(d('records'));
    await store.init();
    const calls: string[] = [];
    const pods = {
      store: sandboxes,
      podsDir: d('files'),
      namespaces: {
        paths: (id: string) => ({ net: d('netns', id, 'net'), ipc: d('netns', id, 'ipc'), uts: d('netns', id, 'uts'), user: d('netns', id, 'user') }),
        remove: async (id: string) => void calls.push(`netns remove ${id.slice(0, 1)}`),
        pidNamespaceAlive: async () => true,
        stopPidNamespace: async () => undefined,
      },
      cni: { del: async (a: { containerId: string }) => void calls.push(`cni del ${a.containerId.slice(0, 1)}`), check: async () => undefined },
      ports: { list: async () => [{ id: 7, protocol: 'tcp' as const, hostIP: '0.0.0.0', hostPort: 8090, childIP: '10.88.0.9', childPort: 80 }], remove: async (id: number) => void calls.push(`port remove ${id}`) },
    } as unknown as import('../../pkg/cri/pods.js').PodRuntime;
    const containers = {
      store,
      exitDir: d('exits'),
      socketDir: d('attach'),
      bundlesDir: d('bundles'),
      runcRoot: d('runc'),
      cgroups: { canEnforceLimits: false },
      monitor: { alive: async () => false },
      mountSources: { ids: async () => [], release: async (id: string) => void calls.push(`mounts release ${id.slice(0, 1)}`) },
      rootfs: { dir: (id: string) => d('snapshots/containers', id), remove: async (id: string) => void calls.push(`rootfs remove ${id.slice(0, 1)}`) },
      runtime: { state: async () => undefined, kill: async () => undefined, delete: async (id: string) => void calls.push(`runc delete ${id.slice(0, 1)}`) },
    } as unknown as ContainerRuntime;
    movedAsideRecords.push({ file: d('records', `${kept}.json`), movedTo: d('records', 'corrupt', `${kept}.json.x`), error: 'Unexpected end of JSON input', at: new Date().toISOString() });
    try {
      await recoverRuntime({ pods, containers, log: silentLogger, podCIDR: '10.88.0.0/16', ipamDir: d('ipam'), settleMs: 100 });
    } finally {
      movedAsideRecords.pop();
    }
    assert.ok(calls.includes('runc delete 4'), `the leftover no record names is released: ${calls.join('; ')}`);
    assert.deepEqual(calls.filter((c) => c.includes(' 3')), [], 'nothing of the id whose record was moved aside is released');
    assert.ok(!calls.includes('port remove 7'), "the moved-aside pod's host port stays");
    await stat(d('bundles', kept));
    await stat(d('netns', kept));
  });
});
