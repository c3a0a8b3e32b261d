import type { ExecSyncRequest__Output, ExecSyncResponse } from '../../proto/types.js';
import { failedPrecondition, invalidArgument } from '../errdefs/errors.js';
import { runcExecSync } from '../sandbox/runc_exec.js';
import { refresh } from './containers.js';
import type { CriContext } from './context.js';

// ExecSync: a command in a running container, its output and exit code
// (kubelet's exec probes use it); the timeout ends it with DEADLINE_EXCEEDED.
export async function execSync(req: ExecSyncRequest__Output, ctx: CriContext, signal: AbortSignal): Promise<ExecSyncResponse> {
  if (req.containerId === '') throw invalidArgument('container_id is required', { field: 'container_id' });
  if (req.cmd.length === 0) throw invalidArgument('cmd must not be empty', { field: 'cmd' });
  const c = ctx.containers;
  const r = await refresh(c.store.get(req.containerId), c);
  if (r.state !== 'CONTAINER_RUNNING') throw failedPrecondition(`container ${r.id} is not running`, { field: 'container_id' });
  const res = await runcExecSync(c.runc, c.runcRoot, r.bundle, r.id, req.cmd, Number(req.timeout), signal);
  return { stdout: res.stdout, stderr: res.stderr, exitCode: res.exitCode };
}
