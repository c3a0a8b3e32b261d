import type { ContainerStatus, ContainerStatusRequest__Output, ContainerStatusResponse } from '../../proto/types.js';
import { invalidArgument } from '../errdefs/errors.js';
import type { ContainerRecord } from '../sandbox/container_store.js';
import { currentResources, resourcesNotEnforced } from './container_update_resources.js';
import { refresh } from './containers.js';
import type { CriContext } from './context.js';

const propagations = new Set(['PROPAGATION_PRIVATE', 'PROPAGATION_HOST_TO_CONTAINER', 'PROPAGATION_BIDIRECTIONAL']);

// ContainerStatus: state from conmon's exit file, times, exit code and reason, image, log path, mounts, resources.
export async function containerStatus(req: ContainerStatusRequest__Output, ctx: CriContext): Promise<ContainerStatusResponse> {
  if (req.containerId === '') throw invalidArgument('container_id is required', { field: 'container_id' });
  const r = await refresh(ctx.containers.store.get(req.containerId), ctx.containers);
  const why = resourcesNotEnforced(r, ctx.containers);
  const notEnforced = why ? { resourcesNotEnforced: why } : {};
  return {
    status: containerStatusOf(r),
    info: req.verbose ? { info: JSON.stringify({ pid: r.pid, bundle: r.bundle, rootfs: r.rootfs, sandboxId: r.sandboxId, ...notEnforced }) } : {},
  };
}

/** The CRI status of a record as it stands (no look at conmon's exit file). */
export function containerStatusOf(r: ContainerRecord): ContainerStatus {
  return {
    id: r.id,
    metadata: r.metadata,
    state: r.state,
    createdAt: r.createdAt,
    startedAt: r.startedAt,
    finishedAt: r.finishedAt,
    exitCode: r.exitCode,
    image: { image: r.image, annotations: {} },
    imageRef: r.imageRef,
    imageId: r.imageId,
    reason: r.reason,
    message: r.message,
    labels: r.labels,
    annotations: r.annotations,
    mounts: r.mounts.map((m) => ({
      containerPath: m.containerPath,
      hostPath: m.hostPath,
      readonly: m.readonly,
      propagation: (propagations.has(m.propagation) ? m.propagation : 'PROPAGATION_PRIVATE') as 'PROPAGATION_PRIVATE',
      ...(m.image ? { image: { image: m.image, imageRef: m.imageRef ?? '', annotations: {} } } : {}),
    })),
    logPath: r.logPath,
    resources: { linux: currentResources(r) },
    ...(r.user ? { user: { linux: { uid: r.user.uid, gid: r.user.gid, supplementalGroups: r.user.additionalGids } } } : {}),
  };
}
