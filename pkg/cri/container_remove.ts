import { rm } from 'node:fs/promises';
import { join } from 'node:path';

import type { RemoveContainerRequest__Output, RemoveContainerResponse } from '../../proto/types.js';
import { invalidArgument } from '../errdefs/errors.js';
import type { ContainerRecord } from '../sandbox/container_store.js';
import type { ContainerRuntime } from './containers.js';
import { stopRecord } from './container_stop.js';
import type { CriContext } from './context.js';

// RemoveContainer: a running one is killed first; then runc forgets it, its
// rootfs is unmounted and removed, and its record goes. Missing is success.
export async function removeContainer(req: RemoveContainerRequest__Output, ctx: CriContext): Promise<RemoveContainerResponse> {
  if (req.containerId === '') throw invalidArgument('container_id is required', { field: 'container_id' });
  const r = ctx.containers.store.find(req.containerId);
  if (!r) return {};
  await removeRecord(r, ctx.containers);
  ctx.log.info('container removed', { id: r.id.slice(0, 12), name: r.metadata.name });
  return {};
}

export async function removeRecord(r: ContainerRecord, c: ContainerRuntime): Promise<void> {
  await stopRecord(r, 0, c);
  await releaseContainer(c, r.id);
  await c.store.delete(r.id);
}

/**
 * What a container holds, all named by its id: runc's state (and a process
 * still in it), the mount sources pinned for it, its rootfs (unmounted), bundle, exit file and conmon's attach
 * folder. Shared with recovery (recover.ts), which finds them by that id when
 * no record names them. Idempotent.
 */
export async function releaseContainer(c: ContainerRuntime, id: string): Promise<void> {
  await c.runtime.delete(id, true);
  await c.mountSources.release(id);
  await c.rootfs.remove(id);
  await rm(join(c.bundlesDir, id), { recursive: true, force: true });
  await rm(join(c.exitDir, id), { force: true });
  await rm(join(c.socketDir, id), { recursive: true, force: true });
}
