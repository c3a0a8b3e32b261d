import { stringify } from 'yaml';

// Kubelet mode: the KubeletConfiguration (kubelet.config.k8s.io/v1beta1) and
// the flags a rootless upstream kubelet runs with inside the node namespace,
// on usernode's CRI socket. docs/kubelet-mode.md explains each setting; this
// is the one place that makes them.

export interface KubeletModeSettings {
  /** The node's credentials for the kube-apiserver (kubelet's --kubeconfig). */
  kubeconfig: string;
  nodeName: string;
  /** The Node's InternalIP; present on the node namespace's lo (kubelet checks its interfaces). */
  nodeIP: string;
  /** usernode's CRI socket (the same path inside the node namespace). */
  criSocket: string;
  /** The kubelet API's port inside the node namespace (the host forwards the same one). */
  port: number;
  /** CA of the client certificates the kubelet API admits (the apiserver's); none: tokens only. */
  clientCAFile: string | undefined;
  tlsCertFile: string | undefined;
  tlsKeyFile: string | undefined;
  anonymousAuth: boolean;
  staticPodPath: string;
  maxPods: number;
  nodeLabels: Record<string, string>;
  taints: ReadonlyArray<{ key: string; value?: string; effect: string }>;
  /** The generated configuration file (kubelet's --config). */
  configPath: string;
  /** kubelet's --root-dir inside the node namespace (bound from the user's data folder). */
  rootDir: string;
  /** The cluster DNS service IPs and domain for ClusterFirst pods (kubelet's clusterDNS, clusterDomain). */
  clusterDNS?: readonly string[];
  clusterDomain?: string;
  /** Container log rotation, as the agent's own node half does it (kubelet's names and syntax: 10Mi, 5, 10s). */
  containerLogs?: { maxSize: string; maxFiles: number; monitorInterval: string };
}

/** kubelet's fixed folders inside the node namespace: the device plugin manager ignores --root-dir. */
export const kubeletRootDir = '/var/lib/kubelet';
export const kubeletPodLogsDir = '/var/log/pods';
export const kubeletContainerLogsDir = '/var/log/containers';

export function kubeletConfiguration(s: KubeletModeSettings): Record<string, unknown> {
  const endpoint = `unix://${s.criSocket}`;
  return {
    apiVersion: 'kubelet.config.k8s.io/v1beta1',
    kind: 'KubeletConfiguration',
    // Tolerates what a user namespace cannot do: sysctls it may not write, oom_score_adj below its own, /dev/kmsg.
    // PodAndContainerStatsFromCRI: pod and container stats (summary API, /metrics/cadvisor) from the
    // runtime, which accounts them, instead of cAdvisor reading cgroups a user namespace does not give it.
    featureGates: { KubeletInUserNamespace: true, PodAndContainerStatsFromCRI: true },
    containerRuntimeEndpoint: endpoint,
    imageServiceEndpoint: endpoint,
    // usernode's runtime reports cgroupfs (RuntimeConfig); kubelet refuses a mismatch.
    cgroupDriver: 'cgroupfs',
    // The hosts this runs on keep swap and hybrid cgroups (v1 controllers): kubelet 1.37 refuses both by default.
    failSwapOn: false,
    failCgroupV1: false,
    // No delegated cgroup subtree kubelet may write: no QoS cgroups, nothing to enforce allocatable on.
    cgroupsPerQOS: false,
    enforceNodeAllocatable: [],
    // On: kubelet's cAdvisor then collects the root file system's stats (it can, in the node
    // namespace), which the summary API, image GC and the eviction manager need; off, all
    // three fail ("cannot find filesystem info for device") and nothing is ever evicted.
    localStorageCapacityIsolation: true,
    address: '0.0.0.0',
    port: s.port,
    readOnlyPort: 0,
    // The kubelet API admits the apiserver's client certificate and tokens reviewed by the apiserver, and asks it who may do what.
    authentication: {
      anonymous: { enabled: s.anonymousAuth },
      webhook: { enabled: true, cacheTTL: '2m0s' },
      ...(s.clientCAFile !== undefined ? { x509: { clientCAFile: s.clientCAFile } } : {}),
    },
    authorization: { mode: 'Webhook', webhook: { cacheAuthorizedTTL: '5m0s', cacheUnauthorizedTTL: '30s' } },
    ...(s.tlsCertFile !== undefined ? { tlsCertFile: s.tlsCertFile, tlsPrivateKeyFile: s.tlsKeyFile } : {}),
    ...(s.clusterDNS !== undefined && s.clusterDNS.length > 0 ? { clusterDNS: [...s.clusterDNS] } : {}),
    ...(s.clusterDomain !== undefined ? { clusterDomain: s.clusterDomain } : {}),
    staticPodPath: s.staticPodPath,
    maxPods: s.maxPods,
    registerNode: true,
    ...(s.taints.length > 0 ? { registerWithTaints: s.taints.map((t) => ({ key: t.key, ...(t.value !== undefined ? { value: t.value } : {}), effect: t.effect })) } : {}),
    healthzBindAddress: '127.0.0.1',
    healthzPort: 10248,
    // kubelet rotates through the runtime's ReopenContainerLog; the same settings as the node half's.
    ...(s.containerLogs !== undefined
      ? { containerLogMaxSize: s.containerLogs.maxSize, containerLogMaxFiles: s.containerLogs.maxFiles, containerLogMonitorInterval: s.containerLogs.monitorInterval }
      : {}),
  };
}

export function kubeletConfigurationYaml(s: KubeletModeSettings): string {
  return `# Written by usernode run --kubelet (docs/kubelet-mode.md); rewritten at every start.\n${stringify(kubeletConfiguration(s))}`;
}

/** kubelet's argv after its path: what the configuration file cannot say. */
export function kubeletFlags(s: KubeletModeSettings): string[] {
  const labels = Object.entries(s.nodeLabels).map(([k, v]) => `${k}=${v}`);
  return [
    `--config=${s.configPath}`,
    `--kubeconfig=${s.kubeconfig}`,
    `--hostname-override=${s.nodeName}`,
    `--node-ip=${s.nodeIP}`,
    `--root-dir=${s.rootDir}`,
    `--cert-dir=${s.rootDir}/pki`,
    ...(labels.length > 0 ? [`--node-labels=${labels.join(',')}`] : []),
    '--v=2',
  ];
}
