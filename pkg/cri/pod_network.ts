import type { AttachmentArgs, PortMapping } from '../netns/cni/invoke.js';
import type { SandboxMetadata } from '../sandbox/sandbox_store.js';

// The one description of a pod's CNI attachment, so ADD (RunPodSandbox),
// DEL (StopPodSandbox) and the DEL of recovery always say the same thing.

/** Only mappings with a host port are forwarded; a bare container port is informational, as in containerd. */
export function forwardedPorts(mappings: readonly PortMapping[]): PortMapping[] {
  return mappings.filter((m) => m.hostPort > 0);
}

/** The pod's interface in its network namespace. */
export const podInterface = 'eth0';

export function podAttachment(id: string, metadata: SandboxMetadata, netns: string, portMappings: readonly PortMapping[]): AttachmentArgs {
  return {
    containerId: id,
    netns,
    ifName: podInterface,
    args: { K8S_POD_NAMESPACE: metadata.namespace, K8S_POD_NAME: metadata.name, K8S_POD_INFRA_CONTAINER_ID: id, K8S_POD_UID: metadata.uid },
    portMappings: forwardedPorts(portMappings),
  };
}
