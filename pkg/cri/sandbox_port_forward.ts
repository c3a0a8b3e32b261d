import type { PortForwardRequest__Output, PortForwardResponse } from '../../proto/types.js';
import { failedPrecondition, invalidArgument } from '../errdefs/errors.js';
import type { CriContext } from './context.js';

// PortForward: a URL of the streaming server through which the client opens
// connections to ports on the pod's own loopback.
export async function portForward(req: PortForwardRequest__Output, ctx: CriContext): Promise<PortForwardResponse> {
  if (req.podSandboxId === '') throw invalidArgument('pod_sandbox_id is required', { field: 'pod_sandbox_id' });
  for (const [i, p] of req.port.entries()) {
    if (!(p > 0 && p <= 65535)) throw invalidArgument(`port ${p} is out of range 1-65535`, { field: `port[${i}]` });
  }
  const r = ctx.pods.store.get(req.podSandboxId);
  if (r.state !== 'SANDBOX_READY') throw failedPrecondition(`pod sandbox ${r.id} is not ready`, { field: 'pod_sandbox_id' });
  return { url: ctx.streaming.url({ kind: 'portforward', req: { podSandboxId: r.id, ports: [...req.port] } }) };
}
