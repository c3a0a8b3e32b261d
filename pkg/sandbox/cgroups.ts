import { access, constants, readFile } from 'node:fs/promises';

// What the host's cgroup layout lets a rootless runtime enforce. Limits need a
// cgroup v2 subtree delegated to the user (systemd's Delegate=yes, or root's
// chown); on hybrid and v1 hosts nothing can be enforced without root, which
// is reported, not hidden (DESIGN.md, "Behaviour every part keeps").

export type CgroupMode = 'unified' | 'hybrid' | 'legacy' | 'none';

export interface CgroupCapabilities {
  mode: CgroupMode;
  /** The cgroup v2 path of this process, when there is one. */
  path: string | undefined;
  /** Controllers enabled for and writable by this user in its v2 subtree. */
  delegatedControllers: string[];
  canEnforceLimits: boolean;
  reason: string;
}

export async function detectCgroups(root = '/sys/fs/cgroup', procSelfCgroup = '/proc/self/cgroup'): Promise<CgroupCapabilities> {
  const mode = await modeOf(root);
  let path: string | undefined;
  try {
    const line = (await readFile(procSelfCgroup, 'utf8')).split('\n').find((l) => l.startsWith('0::'));
    path = line?.slice(3);
  } catch {
    path = undefined;
  }
  if (mode !== 'unified') {
    return {
      mode,
      path,
      delegatedControllers: [],
      canEnforceLimits: false,
      reason:
        mode === 'hybrid'
          ? 'cgroups are in hybrid mode (v1 controllers): CPU, memory and pids limits cannot be enforced without root'
          : `cgroup v2 is not mounted (${mode}): resource limits cannot be enforced without root`,
    };
  }
  const dir = `${root}${path ?? ''}`;
  let controllers: string[] = [];
  try {
    controllers = (await readFile(`${dir}/cgroup.controllers`, 'utf8')).trim().split(/\s+/).filter(Boolean);
    await access(`${dir}/cgroup.subtree_control`, constants.W_OK);
    await access(dir, constants.W_OK);
  } catch {
    return {
      mode,
      path,
      delegatedControllers: [],
      canEnforceLimits: false,
      reason: `cgroup v2 subtree ${dir} is not delegated to this user (systemd: Delegate=yes for user@.service)`,
    };
  }
  const wanted = ['cpu', 'memory', 'pids'];
  const lacking = wanted.filter((c) => !controllers.includes(c));
  return {
    mode,
    path,
    delegatedControllers: controllers,
    canEnforceLimits: lacking.length === 0,
    reason: lacking.length === 0 ? '' : `delegated cgroup v2 subtree lacks controllers: ${lacking.join(', ')}`,
  };
}

async function modeOf(root: string): Promise<CgroupMode> {
  const exists = async (p: string): Promise<boolean> =>
    access(p).then(
      () => true,
      () => false,
    );
  if (await exists(`${root}/cgroup.controllers`)) return 'unified';
  if (await exists(`${root}/unified/cgroup.controllers`)) return 'hybrid';
  if (await exists(`${root}/memory`)) return 'legacy';
  return 'none';
}
