import type { RemovePodSandboxRequest__Output, RemovePodSandboxResponse } from '../../proto/types.js';
import { rm } from 'node:fs/promises';

import { invalidArgument } from '../errdefs/errors.js';
import { removeRecord } from './container_remove.js';
import type { CriContext } from './context.js';
import { stopSandbox } from './sandbox_stop.js';

// RemovePodSandbox: stops it if it still runs, then removes its namespaces,
// files and record. Removing a pod that is gone is success (api.proto).
export async function removePodSandbox(req: RemovePodSandboxRequest__Output, ctx: CriContext): Promise<RemovePodSandboxResponse> {
  if (req.podSandboxId === '') throw invalidArgument('pod_sandbox_id is required', { field: 'pod_sandbox_id' });
  const r = ctx.pods.store.find(req.podSandboxId);
  if (!r) return {};
  await stopSandbox(r, ctx);
  for (const c of ctx.containers.store.list().filter((x) => x.sandboxId === r.id)) await removeRecord(c, ctx.containers);
  await ctx.pods.namespaces.remove(r.id);
  await rm(r.files.dir, { recursive: true, force: true });
  await ctx.pods.store.delete(r.id);
  ctx.log.info('pod sandbox removed', { id: r.id.slice(0, 12), pod: `${r.metadata.namespace}/${r.metadata.name}` });
  return {};
}
