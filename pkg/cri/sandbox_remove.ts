import type { RemovePodSandboxRequest__Output, RemovePodSandboxResponse } from '../../proto/types.js';
import { rm } from 'node:fs/promises';
import { join } from 'node:path';

import { invalidArgument } from '../errdefs/errors.js';
import { removeRecord } from './container_remove.js';
import type { CriContext } from './context.js';
import type { PodRuntime } from './pods.js';
import { stopSandbox } from './sandbox_stop.js';

// RemovePodSandbox: stops it if it still runs, then removes its namespaces,
// files and record. Removing a pod that is gone is success (api.proto).
export async function removePodSandbox(req: RemovePodSandboxRequest__Output, ctx: CriContext): Promise<RemovePodSandboxResponse> {
  if (req.podSandboxId === '') throw invalidArgument('pod_sandbox_id is required', { field: 'pod_sandbox_id' });
  const r = ctx.pods.store.find(req.podSandboxId);
  if (!r) return {};
  await stopSandbox(r, ctx);
  ctx.crashPoint?.('remove_pod_sandbox.stop');
  for (const c of ctx.containers.store.list().filter((x) => x.sandboxId === r.id)) await removeRecord(c, ctx.containers);
  ctx.crashPoint?.('remove_pod_sandbox.containers');
  await removePodFiles(ctx.pods, r.id, ctx.crashPoint);
  await ctx.pods.store.delete(r.id);
  ctx.log.info('pod sandbox removed', { id: r.id.slice(0, 12), pod: `${r.metadata.namespace}/${r.metadata.name}` });
  return {};
}

/**
 * The pod's namespaces (unmounted) and its files (hosts, resolv.conf,
 * hostname), both named by its id: shared with recovery (recover.ts), which
 * finds them by that id when no record names them. Idempotent.
 */
export async function removePodFiles(pods: PodRuntime, id: string, crashPoint?: (step: string) => void): Promise<void> {
  await pods.namespaces.remove(id);
  crashPoint?.('remove_pod_sandbox.namespaces');
  await rm(join(pods.podsDir, id), { recursive: true, force: true });
  crashPoint?.('remove_pod_sandbox.files');
}
