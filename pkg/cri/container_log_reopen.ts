import type { ReopenContainerLogRequest__Output, ReopenContainerLogResponse } from '../../proto/types.js';
import { failedPrecondition, invalidArgument } from '../errdefs/errors.js';
import { refresh } from './containers.js';
import type { CriContext } from './context.js';

// ReopenContainerLog: kubelet's log rotation renames the log file, then asks
// for a new one at the same path; conmon reopens it. Only a running container
// has a log being written (containerd: "container is not running").
export async function reopenContainerLog(req: ReopenContainerLogRequest__Output, ctx: CriContext): Promise<ReopenContainerLogResponse> {
  if (req.containerId === '') throw invalidArgument('container_id is required', { field: 'container_id' });
  const c = ctx.containers;
  const r = await refresh(c.store.get(req.containerId), c);
  if (r.state !== 'CONTAINER_RUNNING') throw failedPrecondition(`container ${r.id} is not running`, { field: 'container_id' });
  await c.monitor.reopenLog(r.bundle, r.logPath);
  return {};
}
