import type { RuntimeCondition, StatusRequest__Output, StatusResponse } from '../../proto/types.js';
import type { Condition, CriContext } from './context.js';

// Status tells the truth: RuntimeReady needs runc, conmon and the state
// folders; NetworkReady needs the CNI plugins and the conflist the agent wrote
// inside a live node namespace. kubelet will not start pods while either is false.

export async function status(req: StatusRequest__Output, ctx: CriContext): Promise<StatusResponse> {
  const health = await ctx.health();
  const conditions: RuntimeCondition[] = [condition('RuntimeReady', health.runtime), condition('NetworkReady', health.network)];
  return {
    status: { conditions },
    info: req.verbose ? await ctx.verboseInfo() : {},
    runtimeHandlers: [
      {
        // The default handler (runc), the only one so far.
        name: '',
        features: {
          recursiveReadOnlyMounts: ctx.features.recursiveReadOnlyMounts,
          userNamespaces: ctx.features.userNamespaces,
        },
      },
    ],
    // Merge (the image's /etc/group groups of the user added) and Strict (only the ones asked for); ContainerStatus reports the identity.
    features: { supplementalGroupsPolicy: true },
  };
}

function condition(type: string, c: Condition): RuntimeCondition {
  return { type, status: c.ready, reason: c.ready ? '' : c.reason, message: c.ready ? '' : c.message };
}
