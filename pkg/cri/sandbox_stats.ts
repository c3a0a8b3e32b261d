import type { PodSandboxStatsRequest__Output, PodSandboxStatsResponse } from '../../proto/types.js';
import { invalidArgument } from '../errdefs/errors.js';
import type { CriContext } from './context.js';
import { samplePods, toCriPodStats } from './stats.js';

// PodSandboxStats: the pod's containers summed, its network and process count, and each container's stats.
export async function podSandboxStats(req: PodSandboxStatsRequest__Output, ctx: CriContext): Promise<PodSandboxStatsResponse> {
  if (req.podSandboxId === '') throw invalidArgument('pod_sandbox_id is required', { field: 'pod_sandbox_id' });
  const [p] = await samplePods([ctx.pods.store.get(req.podSandboxId)], ctx);
  return { stats: toCriPodStats(p!, ctx) };
}
