import assert from 'node:assert/strict';
import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';

import { containerStatus } from '../../pkg/cri/container_status.js';
import { updateContainerResources } from '../../pkg/cri/container_update_resources.js';
import type { ContainerRuntime } from '../../pkg/cri/containers.js';
import type { CriContext } from '../../pkg/cri/context.js';
import { emptyLinuxResources, type LinuxResources } from '../../pkg/cri/linux_resources.js';
import type { PodRuntime } from '../../pkg/cri/pods.js';
import { podSandboxStatus } from '../../pkg/cri/sandbox_status.js';
import { updatePodSandboxResources } from '../../pkg/cri/sandbox_update_resources.js';
import { type DomainError, internal, isDomainError } from '../../pkg/errdefs/errors.js';
import { silentLogger } from '../../pkg/log/logger.js';
import { type ContainerRecord, ContainerStore } from '../../pkg/sandbox/container_store.js';
import type { OciRuntime } from '../../pkg/sandbox/oci_runtime.js';
import { SandboxStore } from '../../pkg/sandbox/sandbox_store.js';
import { containerRecord, sandboxRecord } from '../lib/records.js';

// UpdateContainerResources and UpdatePodSandboxResources against real record
// stores in a temp folder and a fake runc that records what `runc update`
// would get. What a user sees: the status afterwards, and the precise error.

let root: string;
let n = 0;
before(async () => {
  root = await mkdtemp(join(tmpdir(), 'usernode-resources-'));
});
after(async () => {
  await rm(root, { recursive: true, force: true });
});

const ctrId = 'd'.repeat(64);
const podId = 'e'.repeat(64);

interface Bed {
  ctx: CriContext;
  updates: Array<{ id: string; resources: object }>;
  runcFails: { now: boolean };
  bundle: string;
}

async function bed(o: { delegated: boolean; cgroupsPath?: string; state?: ContainerRecord['state'] }): Promise<Bed> {
  const dir = join(root, `r${++n}`);
  const bundle = join(dir, 'bundle');
  await mkdir(bundle, { recursive: true });
  await writeFile(join(bundle, 'config.json'), JSON.stringify({ linux: o.cgroupsPath ? { cgroupsPath: o.cgroupsPath } : {} }));
  const store = new ContainerStore(join(dir, 'containers'));
  const pods = new SandboxStore(join(dir, 'pods'));
  await store.init();
  await pods.init();
  const updates: Bed['updates'] = [];
  const runcFails = { now: false };
  const runtime = {
    update: async (id: string, resources: object) => {
      if (runcFails.now) throw internal(`runc update ${id}: no such cgroup`, { field: 'container_id' });
      updates.push({ id, resources });
    },
  } as unknown as OciRuntime;
  const containers = { store, runtime, exitDir: join(dir, 'exits'), cgroups: { canEnforceLimits: o.delegated } } as unknown as ContainerRuntime;
  const ctx = { log: silentLogger, containers, pods: { store: pods } as unknown as PodRuntime } as unknown as CriContext;
  await store.add(
    containerRecord({
      id: ctrId,
      sandboxId: podId,
      state: o.state ?? 'CONTAINER_RUNNING',
      startedAt: '2',
      bundle,
      // As CreateContainer got it: a CPU limit of half a core.
      config: { linux: { resources: { ...emptyLinuxResources(), cpuPeriod: '100000', cpuQuota: '50000', cpuShares: '512' } } },
    }),
  );
  await pods.add(sandboxRecord({ id: podId }));
  return { ctx, updates, runcFails, bundle };
}

const res = (over: Partial<LinuxResources>): LinuxResources => ({ ...emptyLinuxResources(), ...over });
const update = (ctx: CriContext, linux: LinuxResources | null, containerId = ctrId) =>
  updateContainerResources({ containerId, linux, windows: null, annotations: {} }, ctx);
const status = async (ctx: CriContext) => containerStatus({ containerId: ctrId, verbose: true }, ctx);

async function domainError(p: Promise<unknown>): Promise<DomainError> {
  try {
    await p;
  } catch (e: unknown) {
    if (isDomainError(e)) return e;
    throw e;
  }
  assert.fail('it succeeded');
}

describe('UpdateContainerResources', () => {
  test('ContainerStatus reports the resources the container was created with', async () => {
    const { ctx } = await bed({ delegated: false });
    const s = await status(ctx);
    assert.equal(s.status?.resources?.linux?.cpuQuota, '50000');
    assert.equal(s.status?.resources?.linux?.cpuShares, '512');
    assert.match(JSON.parse(s.info!.info!).resourcesNotEnforced, /no cgroup v2 subtree is delegated/);
  });

  test('without a delegated cgroup: recorded and shown, merged (zero keeps the old value), reported as not enforced, runc untouched', async () => {
    const { ctx, updates } = await bed({ delegated: false });
    await update(ctx, res({ cpuQuota: '200000', memoryLimitInBytes: String(256 * 1024 * 1024) }));
    const s = await status(ctx);
    const linux = s.status?.resources?.linux;
    assert.equal(linux?.cpuQuota, '200000');
    assert.equal(linux?.cpuPeriod, '100000', 'a field the update left at 0 lost its value');
    assert.equal(linux?.cpuShares, '512');
    assert.equal(linux?.memoryLimitInBytes, String(256 * 1024 * 1024));
    assert.match(JSON.parse(s.info!.info!).resourcesNotEnforced, /cannot be enforced rootless/);
    assert.deepEqual(updates, []);
  });

  test('with a delegated cgroup v2: runc update gets the OCI LinuxResources, and nothing is reported unenforced', async () => {
    const { ctx, updates } = await bed({ delegated: true, cgroupsPath: `/user.slice/usernode/${ctrId}` });
    await update(ctx, res({ cpuQuota: '200000', memoryLimitInBytes: '268435456', memorySwapLimitInBytes: '536870912', unified: { 'memory.high': '200000000' } }));
    assert.deepEqual(updates, [
      {
        id: ctrId,
        resources: { cpu: { shares: 512, quota: 200000, period: 100000 }, memory: { limit: 268435456, swap: 536870912 }, unified: { 'memory.high': '200000000' } },
      },
    ]);
    const s = await status(ctx);
    assert.equal(s.status?.resources?.linux?.memoryLimitInBytes, '268435456');
    assert.equal(JSON.parse(s.info!.info!).resourcesNotEnforced, undefined);
  });

  test('a delegated host, but a container made without a cgroup of its own: recorded, not enforced, says why', async () => {
    const { ctx, updates } = await bed({ delegated: true });
    await update(ctx, res({ cpuShares: '1024' }));
    assert.deepEqual(updates, []);
    assert.match(JSON.parse((await status(ctx)).info!.info!).resourcesNotEnforced, /created without a cgroup of its own/);
  });

  test('an exited container: recorded, runc not asked', async () => {
    const { ctx, updates } = await bed({ delegated: true, cgroupsPath: '/x', state: 'CONTAINER_EXITED' });
    await update(ctx, res({ cpuShares: '1024' }));
    assert.deepEqual(updates, []);
    assert.equal((await status(ctx)).status?.resources?.linux?.cpuShares, '1024');
  });

  test('runc failing is the error, and the record keeps the old resources', async () => {
    const { ctx, runcFails } = await bed({ delegated: true, cgroupsPath: '/x' });
    runcFails.now = true;
    const e = await domainError(update(ctx, res({ cpuQuota: '300000' })));
    assert.equal(e.code, 'Internal');
    assert.match(e.message, /runc update/);
    assert.equal((await status(ctx)).status?.resources?.linux?.cpuQuota, '50000');
  });

  test('a missing container is NOT_FOUND, an empty id INVALID_ARGUMENT', async () => {
    const { ctx } = await bed({ delegated: false });
    const missing = await domainError(update(ctx, res({ cpuShares: '2' }), 'f'.repeat(64)));
    assert.equal(missing.code, 'NotFound');
    assert.equal(missing.field, 'container_id');
    const empty = await domainError(update(ctx, res({}), ''));
    assert.equal(empty.code, 'InvalidArgument');
    assert.equal(empty.field, 'container_id');
  });

  const bad: Array<[string, Partial<LinuxResources>, string, RegExp]> = [
    ['a negative CPU quota', { cpuQuota: '-5' }, 'linux.cpu_quota', /out of range/],
    ['a CPU period over one second', { cpuPeriod: '5000000' }, 'linux.cpu_period', /1000-1000000/],
    ['CPU shares of 1', { cpuShares: '1' }, 'linux.cpu_shares', /2-262144/],
    ['a negative memory limit', { memoryLimitInBytes: '-1' }, 'linux.memory_limit_in_bytes', /negative/],
    ['a memory limit of 10 bytes', { memoryLimitInBytes: '10' }, 'linux.memory_limit_in_bytes', /one page/],
    ['a memory limit of an exabyte', { memoryLimitInBytes: '1000000000000000000' }, 'linux.memory_limit_in_bytes', /more than/],
    ['swap below memory', { memoryLimitInBytes: '268435456', memorySwapLimitInBytes: '1048576' }, 'linux.memory_swap_limit_in_bytes', /less than memory_limit_in_bytes/],
    ['an oom_score_adj of 5000', { oomScoreAdj: '5000' }, 'linux.oom_score_adj', /-1000-1000/],
    ['a CPU list that is not one', { cpusetCpus: 'all' }, 'linux.cpuset_cpus', /CPU list/],
    ['a hugepage size that is not one', { hugepageLimits: [{ pageSize: 'huge', limit: '1' }] }, 'linux.hugepage_limits[0].page_size', /page size/],
    ['a unified key with a path in it', { unified: { '../../cgroup.procs': '1' } }, 'linux.unified["../../cgroup.procs"]', /cgroup v2 file name/],
  ];
  for (const [what, over, field, message] of bad) {
    test(`${what} is INVALID_ARGUMENT naming ${field}, and nothing changes`, async () => {
      const { ctx, updates } = await bed({ delegated: true, cgroupsPath: '/x' });
      const e = await domainError(update(ctx, res(over)));
      assert.equal(e.code, 'InvalidArgument');
      assert.equal(e.field, field);
      assert.match(e.message, message);
      assert.deepEqual(updates, []);
      assert.equal((await status(ctx)).status?.resources?.linux?.cpuQuota, '50000');
    });
  }
});

describe('UpdatePodSandboxResources', () => {
  test('recorded on the pod (verbose status shows them and that they are not enforced) and answered with success', async () => {
    const { ctx } = await bed({ delegated: false });
    await updatePodSandboxResources({ podSandboxId: podId, overhead: res({ cpuShares: '10' }), resources: res({ cpuQuota: '150000', cpuPeriod: '100000' }) }, ctx);
    const s = await podSandboxStatus({ podSandboxId: podId, verbose: true }, ctx);
    const info = JSON.parse(s.info!.info!) as { resources: { resources: LinuxResources; overhead: LinuxResources; notEnforced: string } };
    assert.equal(info.resources.resources.cpuQuota, '150000');
    assert.equal(info.resources.overhead.cpuShares, '10');
    assert.match(info.resources.notEnforced, /not enforced/);
  });

  test('bad input names the field; a missing pod is NOT_FOUND', async () => {
    const { ctx } = await bed({ delegated: false });
    const e = await domainError(updatePodSandboxResources({ podSandboxId: podId, overhead: res({ cpuShares: '-3' }), resources: null }, ctx));
    assert.equal(e.code, 'InvalidArgument');
    assert.equal(e.field, 'overhead.cpu_shares');
    const r = await domainError(updatePodSandboxResources({ podSandboxId: podId, overhead: null, resources: res({ memoryLimitInBytes: '-1' }) }, ctx));
    assert.equal(r.field, 'resources.memory_limit_in_bytes');
    const missing = await domainError(updatePodSandboxResources({ podSandboxId: 'nope', overhead: null, resources: null }, ctx));
    assert.equal(missing.code, 'NotFound');
    assert.equal(missing.field, 'pod_sandbox_id');
    const empty = await domainError(updatePodSandboxResources({ podSandboxId: '', overhead: null, resources: null }, ctx));
    assert.equal(empty.code, 'InvalidArgument');
  });
});
