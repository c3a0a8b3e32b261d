import type { UpdateRuntimeConfigRequest__Output, UpdateRuntimeConfigResponse } from '../../proto/types.js';
import type { CriContext } from './context.js';

// UpdateRuntimeConfig: kubelet hands the runtime the Node's spec.podCIDR once
// the controller-manager allocates one, and again at every node status sync
// until the call succeeds. usernode's pods take their addresses from its own
// bridge network (network.podCIDR in the config file), which no other node
// routes to, so the cluster's range is taken note of, not applied: the answer
// is success, as containerd's is when a CNI configuration is already in place.
const noted = new Set<string>();

export async function updateRuntimeConfig(req: UpdateRuntimeConfigRequest__Output, ctx: CriContext): Promise<UpdateRuntimeConfigResponse> {
  const cidr = req.runtimeConfig?.networkConfig?.podCidr ?? '';
  if (cidr !== '' && !noted.has(cidr)) {
    // Kubelet sends one CIDR again and again; a client sending ever new ones must not grow this set without end.
    if (noted.size >= 16) noted.clear();
    noted.add(cidr);
    ctx.log.info("kubelet gave the node's pod CIDR; pods keep addresses from usernode's own network (network.podCIDR)", { podCIDR: cidr });
  }
  return {};
}
