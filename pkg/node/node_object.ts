// The core/v1 Node this agent registers (issue 6): its labels, addresses,
// capacity and allocatable, nodeInfo and conditions, built from the host's
// facts as kubelet builds them. Pure: the facts come in (host_facts gathers
// them), so every rule is unit-tested without a control plane.

export interface HostFacts {
  hostname: string;
  /** The addresses other machines reach the node at (InternalIP). */
  internalIPs: string[];
  cpus: number;
  memoryBytes: number;
  /** The file system the node's data (images, pods) lives on. */
  ephemeralStorageBytes: number;
  ephemeralStorageFreeBytes: number;
  memoryAvailableBytes: number;
  pidMax: number;
  pidsInUse: number;
  kernelVersion: string;
  osImage: string;
  /** Node's process.arch / process.platform. */
  arch: string;
  os: string;
  machineID: string;
  bootID: string;
}

export interface NodeOptions {
  name: string;
  labels: Record<string, string>;
  taints: Array<{ key: string; value?: string; effect: 'NoSchedule' | 'PreferNoSchedule' | 'NoExecute' }>;
  /** Reserved for the system and the agent itself (kubelet's system-reserved + kube-reserved). */
  reserved: { cpuMillis: number; memoryBytes: number };
  maxPods: number;
  runtimeVersion: string;
  kubeletVersion: string;
  kubeletPort: number;
  /** Is the runtime answering (CRI Status: RuntimeReady and NetworkReady)? */
  runtimeReady: { ready: boolean; message: string };
}

/** Kubernetes' names for Node's architectures. */
export function goArch(arch: string): string {
  return { x64: 'amd64', arm64: 'arm64', arm: 'arm', ppc64: 'ppc64le', s390x: 's390x', riscv64: 'riscv64', ia32: '386' }[arch] ?? arch;
}

const kiB = (bytes: number): string => `${Math.floor(bytes / 1024)}Ki`;

// kubelet's default eviction thresholds: pressure is when less than these remain.
const memoryPressureBelow = 100 * 1024 * 1024;
const diskPressureBelowRatio = 0.1;
const pidPressureAboveRatio = 0.9;

interface Condition {
  type: string;
  status: 'True' | 'False' | 'Unknown';
  reason: string;
  message: string;
}

export function nodeConditions(h: HostFacts, o: Pick<NodeOptions, 'runtimeReady'>): Condition[] {
  const memPressure = h.memoryAvailableBytes < memoryPressureBelow;
  const diskPressure = h.ephemeralStorageBytes > 0 && h.ephemeralStorageFreeBytes / h.ephemeralStorageBytes < diskPressureBelowRatio;
  const pidPressure = h.pidMax > 0 && h.pidsInUse / h.pidMax > pidPressureAboveRatio;
  return [
    memPressure
      ? { type: 'MemoryPressure', status: 'True', reason: 'KubeletHasInsufficientMemory', message: `only ${kiB(h.memoryAvailableBytes)} of memory available` }
      : { type: 'MemoryPressure', status: 'False', reason: 'KubeletHasSufficientMemory', message: 'node has sufficient memory available' },
    diskPressure
      ? { type: 'DiskPressure', status: 'True', reason: 'KubeletHasDiskPressure', message: `less than 10% of the node's storage is free` }
      : { type: 'DiskPressure', status: 'False', reason: 'KubeletHasNoDiskPressure', message: 'node has no disk pressure' },
    pidPressure
      ? { type: 'PIDPressure', status: 'True', reason: 'KubeletHasInsufficientPID', message: `${h.pidsInUse} of ${h.pidMax} process ids in use` }
      : { type: 'PIDPressure', status: 'False', reason: 'KubeletHasSufficientPID', message: 'node has sufficient PID available' },
    o.runtimeReady.ready
      ? { type: 'Ready', status: 'True', reason: 'KubeletReady', message: 'usernode is posting ready status' }
      : { type: 'Ready', status: 'False', reason: 'KubeletNotReady', message: `container runtime is not ready: ${o.runtimeReady.message}` },
  ];
}

/** The Node object (metadata and status; spec's taints) for create, or for a status patch. */
export function buildNode(h: HostFacts, o: NodeOptions): Record<string, unknown> {
  const capacity = {
    cpu: String(h.cpus),
    memory: kiB(h.memoryBytes),
    'ephemeral-storage': kiB(h.ephemeralStorageBytes),
    pods: String(o.maxPods),
  };
  const allocatable = {
    cpu: `${Math.max(0, h.cpus * 1000 - o.reserved.cpuMillis)}m`,
    memory: kiB(Math.max(0, h.memoryBytes - o.reserved.memoryBytes)),
    'ephemeral-storage': kiB(h.ephemeralStorageBytes),
    pods: String(o.maxPods),
  };
  return {
    apiVersion: 'v1',
    kind: 'Node',
    metadata: {
      name: o.name,
      labels: {
        'kubernetes.io/hostname': o.name,
        'kubernetes.io/os': h.os,
        'kubernetes.io/arch': goArch(h.arch),
        'beta.kubernetes.io/os': h.os,
        'beta.kubernetes.io/arch': goArch(h.arch),
        ...o.labels,
      },
    },
    spec: o.taints.length > 0 ? { taints: o.taints } : {},
    status: {
      capacity,
      allocatable,
      conditions: nodeConditions(h, o),
      addresses: [...h.internalIPs.map((a) => ({ type: 'InternalIP', address: a })), { type: 'Hostname', address: h.hostname }],
      daemonEndpoints: { kubeletEndpoint: { Port: o.kubeletPort } },
      nodeInfo: {
        machineID: h.machineID,
        systemUUID: h.machineID,
        bootID: h.bootID,
        kernelVersion: h.kernelVersion,
        osImage: h.osImage,
        containerRuntimeVersion: o.runtimeVersion,
        kubeletVersion: o.kubeletVersion,
        kubeProxyVersion: '',
        operatingSystem: h.os,
        architecture: goArch(h.arch),
      },
    },
  };
}
