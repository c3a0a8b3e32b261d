import assert from 'node:assert/strict';
import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';

import { oomKillsOf } from '../../pkg/cri/containers.js';

// A container's OOM kills, from its own cgroup's memory.events (a folder
// stands in for /sys/fs/cgroup): what makes an exit's reason OOMKilled.

describe('OOM kills of a container', () => {
  let dir: string;
  before(async () => {
    dir = await mkdtemp(join(tmpdir(), 'oom-'));
  });
  after(() => rm(dir, { recursive: true, force: true }));

  const bundle = async (name: string, cgroupsPath?: string): Promise<string> => {
    const b = join(dir, name);
    await mkdir(b, { recursive: true });
    await writeFile(join(b, 'config.json'), JSON.stringify({ linux: cgroupsPath ? { cgroupsPath } : {} }));
    return b;
  };

  test('counted from memory.events of the cgroup runc made for it', async () => {
    const root = join(dir, 'cgroup');
    await mkdir(join(root, 'pods', 'c1'), { recursive: true });
    await writeFile(join(root, 'pods', 'c1', 'memory.events'), 'low 0\nhigh 0\nmax 4\noom 1\noom_kill 1\noom_group_kill 0\n');
    assert.equal(await oomKillsOf(await bundle('b1', '/pods/c1'), root), 1);
    await mkdir(join(root, 'pods', 'c2'), { recursive: true });
    await writeFile(join(root, 'pods', 'c2', 'memory.events'), 'oom 0\noom_kill 0\n');
    assert.equal(await oomKillsOf(await bundle('b2', '/pods/c2'), root), 0);
  });

  test('none known without a cgroup of its own, or once it is gone', async () => {
    assert.equal(await oomKillsOf(await bundle('b3'), join(dir, 'cgroup')), 0);
    assert.equal(await oomKillsOf(await bundle('b4', '/pods/gone'), join(dir, 'cgroup')), 0);
  });
});
