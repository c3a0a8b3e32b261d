import type { ContainerStatsRequest__Output, ContainerStatsResponse } from '../../proto/types.js';
import { invalidArgument } from '../errdefs/errors.js';
import type { CriContext } from './context.js';
import { sampleContainers, toCriContainerStats } from './stats.js';

// ContainerStats: CPU, memory and writable layer of one container (stats.ts).
export async function containerStats(req: ContainerStatsRequest__Output, ctx: CriContext): Promise<ContainerStatsResponse> {
  if (req.containerId === '') throw invalidArgument('container_id is required', { field: 'container_id' });
  const [s] = await sampleContainers([ctx.containers.store.get(req.containerId)], ctx);
  return { stats: toCriContainerStats(s!, ctx) };
}
