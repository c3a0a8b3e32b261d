import { access, mkdir, readFile, writeFile } from 'node:fs/promises';
import { basename, dirname, join, posix } from 'node:path';

import type { CgroupCapabilities } from './cgroups.js';

// Where containers get their cgroups when the host delegates a cgroup v2
// subtree to the user (systemd Delegate=yes: run the agent as a user service
// or `systemd-run --user -p Delegate=yes usernode run`). cgroup v2 lets a
// cgroup hand controllers to its children only while no process sits in it
// ("no internal processes"), so the agent's own processes move to a leaf,
// <base>/agent, the controllers are enabled in <base>, and every container's
// cgroup is made under <base>/pods (runc enables them further down). The
// layout is found again after a restart: the runtime half then starts in
// <base>/agent already.

export const limitControllers = ['cpu', 'memory', 'pids'] as const;

export interface ContainerCgroups {
  canEnforceLimits: boolean;
  /** The cgroup (relative to the cgroup root) containers are made under. */
  path?: string;
  reason: string;
}

const exists = (p: string): Promise<boolean> =>
  access(p).then(
    () => true,
    () => false,
  );

export async function prepareContainerCgroups(caps: CgroupCapabilities, root = '/sys/fs/cgroup'): Promise<ContainerCgroups> {
  if (!caps.canEnforceLimits || caps.path === undefined) return { canEnforceLimits: false, reason: caps.reason };
  let base = caps.path;
  if (basename(base) === 'agent' && (await exists(join(root, dirname(base), 'pods')))) base = dirname(base);
  const dir = join(root, base);
  try {
    await mkdir(join(dir, 'agent'), { recursive: true });
    // Every process still in <base> (the node half, rootlesskit, slirp4netns, this one) to the leaf.
    const procs = (await readFile(join(dir, 'cgroup.procs'), 'utf8')).split('\n').filter((l) => l.trim() !== '');
    for (const pid of procs) {
      await writeFile(join(dir, 'agent', 'cgroup.procs'), `${pid}\n`).catch((e: NodeJS.ErrnoException) => {
        // Gone meanwhile is fine.
        if (e.code !== 'ESRCH') throw e;
      });
    }
    const enable = limitControllers.map((c) => `+${c}`).join(' ');
    await writeFile(join(dir, 'cgroup.subtree_control'), enable);
    await mkdir(join(dir, 'pods'), { recursive: true });
    await writeFile(join(dir, 'pods', 'cgroup.subtree_control'), enable);
  } catch (e: unknown) {
    return { canEnforceLimits: false, reason: `the delegated cgroup v2 subtree ${dir} cannot be arranged for containers: ${(e as Error).message}` };
  }
  return { canEnforceLimits: true, path: posix.join(base, 'pods'), reason: '' };
}
