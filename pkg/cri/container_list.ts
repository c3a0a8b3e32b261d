import type { ListContainersRequest__Output, ListContainersResponse } from '../../proto/types.js';
import { matchesContainerFilter, refresh } from './containers.js';
import type { CriContext } from './context.js';

// ListContainers with the CRI filter: id prefix, state, pod, labels.
export async function listContainers(req: ListContainersRequest__Output, ctx: CriContext): Promise<ListContainersResponse> {
  const f = req.filter;
  const all = await Promise.all(ctx.containers.store.list().map((r) => refresh(r, ctx.containers)));
  const items = all.filter((r) => matchesContainerFilter(r, f) && (!f?.state || r.state === f.state.state));
  return {
    containers: items.map((r) => ({
      id: r.id,
      podSandboxId: r.sandboxId,
      metadata: r.metadata,
      image: { image: r.image, annotations: {} },
      imageRef: r.imageRef,
      imageId: r.imageId,
      state: r.state,
      createdAt: r.createdAt,
      labels: r.labels,
      annotations: r.annotations,
    })),
  };
}
