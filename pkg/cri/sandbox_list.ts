import type { ListPodSandboxRequest__Output, ListPodSandboxResponse } from '../../proto/types.js';
import type { CriContext } from './context.js';
import { matchesSandboxFilter } from './pods.js';

// ListPodSandbox with the CRI filter: id (a prefix, as crictl sends), state,
// and labels that must all match.
export async function listPodSandbox(req: ListPodSandboxRequest__Output, ctx: CriContext): Promise<ListPodSandboxResponse> {
  const f = req.filter;
  const items = ctx.pods.store
    .list()
    .filter((r) => matchesSandboxFilter(r, f) && (!f?.state || r.state === f.state.state))
    .sort((a, b) => (BigInt(b.createdAt) > BigInt(a.createdAt) ? 1 : -1));
  return {
    items: items.map((r) => ({
      id: r.id,
      metadata: r.metadata,
      state: r.state,
      createdAt: r.createdAt,
      labels: r.labels,
      annotations: r.annotations,
      runtimeHandler: r.runtimeHandler,
    })),
  };
}
