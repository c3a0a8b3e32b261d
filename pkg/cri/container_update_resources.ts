import { readFile } from 'node:fs/promises';
import { join } from 'node:path';

import type { UpdateContainerResourcesRequest__Output, UpdateContainerResourcesResponse } from '../../proto/types.js';
import { invalidArgument, notFound } from '../errdefs/errors.js';
import type { ContainerRecord } from '../sandbox/container_store.js';
import { ociResources } from '../sandbox/oci_spec.js';
import type { ContainerRuntime } from './containers.js';
import type { CriContext } from './context.js';
import { checkLinuxResources, type LinuxResources, mergeLinuxResources, normalizeLinuxResources } from './linux_resources.js';

// UpdateContainerResources: the new resources merged into the container's
// (containerd's rule: a zero field keeps the old value) and recorded, so
// ContainerStatus reports them. They are enforced only where they can be: a
// container that runc created in a cgroup of its own under a delegated cgroup
// v2 subtree gets `runc update`; anywhere else (every hybrid or v1 host, such
// as these) they are recorded, logged and reported as not enforced, never
// pretended.

export async function updateContainerResources(req: UpdateContainerResourcesRequest__Output, ctx: CriContext): Promise<UpdateContainerResourcesResponse> {
  if (req.containerId === '') throw invalidArgument('container_id is required', { field: 'container_id' });
  const c = ctx.containers;
  const r = c.store.get(req.containerId);
  if (!req.linux) return {};
  const asked = normalizeLinuxResources(req.linux);
  checkLinuxResources(asked, 'linux');
  const resources = mergeLinuxResources(currentResources(r), asked);

  const live = r.state === 'CONTAINER_CREATED' || r.state === 'CONTAINER_RUNNING';
  const cgroup = await ownCgroup(r, c);
  let notEnforced = '';
  if (cgroup === undefined) {
    notEnforced = c.cgroups.canEnforceLimits ? 'the container was created without a cgroup of its own, so runc cannot apply limits to it' : notDelegated;
  } else if (live) {
    const notes: string[] = [];
    await c.runtime.update(r.id, ociResources(resources, undefined, notes) ?? {});
    notEnforced = notes.join('; ');
  }
  const updated = await c.store.modify(r.id, (cur) => ({ ...cur, resources, resourcesNotEnforced: notEnforced }));
  if (!updated) throw notFound(`container ${req.containerId} not found`, { field: 'container_id' });
  const log = { id: r.id.slice(0, 12), name: r.metadata.name, cpuQuota: resources.cpuQuota, cpuShares: resources.cpuShares, memory: resources.memoryLimitInBytes };
  if (notEnforced) ctx.log.warn('container resources recorded, not enforced rootless', { ...log, reason: notEnforced });
  else ctx.log.info(live ? 'container resources updated' : 'container resources recorded (the container is not running)', log);
  return {};
}

const notDelegated = 'no cgroup v2 subtree is delegated to the user: CPU and memory limits cannot be enforced rootless on this host';

/** Why the container's resources are not enforced; '' when they are or when it has none. */
export function resourcesNotEnforced(r: ContainerRecord, c: ContainerRuntime): string {
  if (r.resourcesNotEnforced !== undefined) return r.resourcesNotEnforced;
  const x = currentResources(r);
  const asks = x.cpuQuota !== '0' || x.cpuShares !== '0' || x.memoryLimitInBytes !== '0' || x.memorySwapLimitInBytes !== '0' || x.hugepageLimits.length > 0 || x.cpusetCpus !== '' || Object.keys(x.unified).length > 0;
  return asks && !c.cgroups.canEnforceLimits ? notDelegated : '';
}

/** What the container has now: the last update, else what its config asked for. */
export function currentResources(r: ContainerRecord): LinuxResources {
  return normalizeLinuxResources(r.resources ?? (r.config as { linux?: { resources?: unknown } } | undefined)?.linux?.resources);
}

/** The container's cgroupsPath from its bundle, when runc created it in a delegated cgroup v2 subtree. */
async function ownCgroup(r: ContainerRecord, c: ContainerRuntime): Promise<string | undefined> {
  if (!c.cgroups.canEnforceLimits) return undefined;
  try {
    const spec = JSON.parse(await readFile(join(r.bundle, 'config.json'), 'utf8')) as { linux?: { cgroupsPath?: string } };
    return spec.linux?.cgroupsPath || undefined;
  } catch {
    return undefined;
  }
}
