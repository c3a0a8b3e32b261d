import type { StartContainerRequest__Output, StartContainerResponse } from '../../proto/types.js';
import { failedPrecondition, invalidArgument } from '../errdefs/errors.js';
import { nowNs } from './containers.js';
import type { CriContext } from './context.js';

// StartContainer: runc start on the container conmon holds.
export async function startContainer(req: StartContainerRequest__Output, ctx: CriContext): Promise<StartContainerResponse> {
  if (req.containerId === '') throw invalidArgument('container_id is required', { field: 'container_id' });
  const c = ctx.containers;
  const r = c.store.get(req.containerId);
  if (r.state !== 'CONTAINER_CREATED') throw failedPrecondition(`container ${r.id} is ${r.state.replace('CONTAINER_', '').toLowerCase()}, not created`, { field: 'container_id' });
  // Taken before runc start: a process that exits at once must not finish before it started.
  const startedAt = nowNs();
  await c.runtime.start(r.id);
  // A crash here leaves a CREATED record for a running process: recovery asks runc (recover.ts).
  ctx.crashPoint?.('start_container.runc_start');
  await c.store.update({ ...r, state: 'CONTAINER_RUNNING', startedAt });
  ctx.crashPoint?.('start_container.record');
  ctx.log.info('container started', { id: r.id.slice(0, 12), name: r.metadata.name });
  return {};
}
