import type { AttachRequest__Output, AttachResponse } from '../../proto/types.js';
import { failedPrecondition, invalidArgument } from '../errdefs/errors.js';
import { refresh } from './containers.js';
import type { CriContext } from './context.js';

// Attach: a URL of the streaming server joining the client to the
// container's main process: its output from then on, its stdin (when the
// container was created with one) and its terminal size.
export async function attach(req: AttachRequest__Output, ctx: CriContext): Promise<AttachResponse> {
  if (req.containerId === '') throw invalidArgument('container_id is required', { field: 'container_id' });
  if (!req.stdin && !req.stdout && !req.stderr) throw invalidArgument('one of stdin, stdout and stderr must be set', { field: 'stdout' });
  const c = ctx.containers;
  const r = await refresh(c.store.get(req.containerId), c);
  if (r.state !== 'CONTAINER_RUNNING') throw failedPrecondition(`container ${r.id} is not running`, { field: 'container_id' });
  // The streams are the ones the client opens for its own tty flag (kubelet passes the container's).
  return { url: ctx.streaming.url({ kind: 'attach', req: { containerId: r.id, tty: req.tty, stdin: req.stdin, stdout: req.stdout, stderr: req.stderr } }) };
}
