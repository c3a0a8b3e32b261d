import type { ListContainerStatsRequest__Output, ListContainerStatsResponse } from '../../proto/types.js';
import { matchesContainerFilter } from './containers.js';
import type { CriContext } from './context.js';
import { forgetGone, sampleContainers, toCriContainerStats } from './stats.js';

// ListContainerStats with the CRI filter (id, pod, labels): every matching
// container, created and exited ones too (with no CPU or memory numbers).
export async function listContainerStats(req: ListContainerStatsRequest__Output, ctx: CriContext): Promise<ListContainerStatsResponse> {
  const records = ctx.containers.store.list().filter((r) => matchesContainerFilter(r, req.filter));
  const samples = await sampleContainers(records, ctx);
  forgetGone(ctx);
  return { stats: samples.map((s) => toCriContainerStats(s, ctx)) };
}
