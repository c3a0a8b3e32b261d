import type { UpdatePodSandboxResourcesRequest__Output, UpdatePodSandboxResourcesResponse } from '../../proto/types.js';
import { invalidArgument } from '../errdefs/errors.js';
import type { CriContext } from './context.js';
import { checkLinuxResources, normalizeLinuxResources } from './linux_resources.js';

// UpdatePodSandboxResources (in-place pod resize): kubelet tells the runtime
// the pod's new overhead and total resources. usernode makes no pod-level
// cgroup, so there is nothing to apply them to: they are checked, recorded
// on the sandbox (PodSandboxStatus verbose info shows them) and logged as
// not enforced. containerd likewise only hands them to NRI and answers success.

const notEnforced = 'usernode makes no pod-level cgroup (each container has its own, only under a delegated cgroup v2 subtree): pod resources are recorded, not enforced';

export async function updatePodSandboxResources(req: UpdatePodSandboxResourcesRequest__Output, ctx: CriContext): Promise<UpdatePodSandboxResourcesResponse> {
  if (req.podSandboxId === '') throw invalidArgument('pod_sandbox_id is required', { field: 'pod_sandbox_id' });
  const r = ctx.pods.store.get(req.podSandboxId);
  const overhead = req.overhead ? normalizeLinuxResources(req.overhead) : undefined;
  const resources = req.resources ? normalizeLinuxResources(req.resources) : undefined;
  if (overhead) checkLinuxResources(overhead, 'overhead');
  if (resources) checkLinuxResources(resources, 'resources');
  // Of the record as it is when this write's turn comes: a Stop meanwhile keeps its state, its network stays released.
  await ctx.pods.store.modify(r.id, (cur) => ({ ...cur, resources: { ...(overhead ? { overhead } : {}), ...(resources ? { resources } : {}), notEnforced } }));
  ctx.log.warn('pod sandbox resources recorded, not enforced rootless', {
    id: r.id.slice(0, 12),
    pod: `${r.metadata.namespace}/${r.metadata.name}`,
    cpuQuota: resources?.cpuQuota,
    memory: resources?.memoryLimitInBytes,
    reason: notEnforced,
  });
  return {};
}
