import type { ListPodSandboxStatsRequest__Output, ListPodSandboxStatsResponse } from '../../proto/types.js';
import type { CriContext } from './context.js';
import { matchesSandboxFilter } from './pods.js';
import { forgetGone, samplePods, toCriPodStats } from './stats.js';

// ListPodSandboxStats with the CRI filter: id (a prefix) and labels that must all match.
export async function listPodSandboxStats(req: ListPodSandboxStatsRequest__Output, ctx: CriContext): Promise<ListPodSandboxStatsResponse> {
  const sandboxes = ctx.pods.store.list().filter((s) => matchesSandboxFilter(s, req.filter));
  const pods = await samplePods(sandboxes, ctx);
  forgetGone(ctx);
  return { stats: pods.map((p) => toCriPodStats(p, ctx)) };
}
