import assert from 'node:assert/strict';
import { mkdir, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';

import { prepareContainerCgroups } from '../../pkg/sandbox/cgroup_tree.js';
import type { CgroupCapabilities } from '../../pkg/sandbox/cgroups.js';

// The delegated cgroup v2 layout for containers, on a folder standing in for
// /sys/fs/cgroup (the cgroup files are plain files here).

const delegated = (path: string): CgroupCapabilities => ({ mode: 'unified', path, delegatedControllers: ['cpu', 'memory', 'pids'], canEnforceLimits: true, reason: '' });

describe('containers in a delegated cgroup v2 subtree', () => {
  let root: string;
  const service = '/user.slice/user-1000.slice/user@1000.service/app.slice/usernode.service';

  before(async () => {
    root = await mkdtemp(join(tmpdir(), 'cgroup-tree-'));
    await mkdir(join(root, service), { recursive: true });
    await writeFile(join(root, service, 'cgroup.procs'), '4242\n');
  });
  after(() => rm(root, { recursive: true, force: true }));

  test('without delegation nothing is touched and the reason is kept', async () => {
    const r = await prepareContainerCgroups({ mode: 'hybrid', path: '/', delegatedControllers: [], canEnforceLimits: false, reason: 'cgroups are in hybrid mode' }, root);
    assert.deepEqual(r, { canEnforceLimits: false, reason: 'cgroups are in hybrid mode' });
  });

  test("the agent's processes go to a leaf, the controllers are handed down, containers go under pods", async () => {
    const r = await prepareContainerCgroups(delegated(service), root);
    assert.deepEqual(r, { canEnforceLimits: true, path: `${service}/pods`, reason: '' });
    assert.equal(await readFile(join(root, service, 'agent', 'cgroup.procs'), 'utf8'), '4242\n');
    assert.equal(await readFile(join(root, service, 'cgroup.subtree_control'), 'utf8'), '+cpu +memory +pids');
    assert.equal(await readFile(join(root, service, 'pods', 'cgroup.subtree_control'), 'utf8'), '+cpu +memory +pids');
  });

  test('after a restart (the runtime starts in the leaf) the same layout is found, not nested again', async () => {
    await writeFile(join(root, service, 'agent', 'cgroup.procs'), '');
    const r = await prepareContainerCgroups(delegated(`${service}/agent`), root);
    assert.equal(r.path, `${service}/pods`);
  });

  test('a subtree that cannot be arranged is reported, and limits are not claimed', async () => {
    const r = await prepareContainerCgroups(delegated('/no/such/cgroup'), join(root, 'missing'));
    assert.equal(r.canEnforceLimits, false);
    assert.match(r.reason, /cannot be arranged/);
  });
});
