import type { ExecRequest__Output, ExecResponse } from '../../proto/types.js';
import { failedPrecondition, invalidArgument } from '../errdefs/errors.js';
import { refresh } from './containers.js';
import type { CriContext } from './context.js';

// Exec: a URL of the streaming server where the client (kubelet, crictl)
// runs the command interactively; the command starts when it connects.
export async function exec(req: ExecRequest__Output, ctx: CriContext): Promise<ExecResponse> {
  if (req.containerId === '') throw invalidArgument('container_id is required', { field: 'container_id' });
  if (req.cmd.length === 0) throw invalidArgument('cmd must not be empty', { field: 'cmd' });
  if (!req.stdin && !req.stdout && !req.stderr) throw invalidArgument('one of stdin, stdout and stderr must be set', { field: 'stdout' });
  if (req.tty && req.stderr) throw invalidArgument('tty and stderr cannot both be set: a terminal has one output', { field: 'stderr' });
  const c = ctx.containers;
  const r = await refresh(c.store.get(req.containerId), c);
  if (r.state !== 'CONTAINER_RUNNING') throw failedPrecondition(`container ${r.id} is not running`, { field: 'container_id' });
  return { url: ctx.streaming.url({ kind: 'exec', req: { containerId: r.id, cmd: [...req.cmd], tty: req.tty, stdin: req.stdin, stdout: req.stdout, stderr: req.stderr } }) };
}
