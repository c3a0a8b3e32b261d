import type { PodContainer, PodManifest } from './pod_manifest.js';

// A pod's QoS class and each container's CRI linux resources, as kubelet
// computes them (pkg/apis/core/v1/helper/qos, kuberuntime's
// generateLinuxContainerResources, pkg/kubelet/qos/policy.go): CPU shares
// from the request, a CFS quota from the limit, the memory limit, and an OOM
// score that protects Guaranteed pods and sacrifices BestEffort ones first.

export type QosClass = 'Guaranteed' | 'Burstable' | 'BestEffort';

const minShares = 2;
const maxShares = 262144;
const sharesPerCpu = 1024;
/** The CFS period kubelet uses (100 ms). */
export const cpuPeriodUs = 100000;
const minQuotaUs = 1000;
const guaranteedOomScoreAdj = -997;
const bestEffortOomScoreAdj = 1000;

export function qosClass(pod: PodManifest): QosClass {
  const all = [...pod.initContainers, ...pod.containers];
  let anySet = false;
  let guaranteed = true;
  for (const c of all) {
    const { requests: r, limits: l } = c.resources;
    if (r.cpu || r.memory || l.cpu || l.memory) anySet = true;
    // Requests were defaulted to limits: Guaranteed is every container with both limits, equal to the requests.
    if (!l.cpu || !l.memory || r.cpu !== l.cpu || r.memory !== l.memory) guaranteed = false;
  }
  if (!anySet) return 'BestEffort';
  return guaranteed ? 'Guaranteed' : 'Burstable';
}

export interface LinuxResources {
  cpuShares: number;
  cpuPeriod?: number;
  cpuQuota?: number;
  memoryLimitInBytes?: number;
  oomScoreAdj: number;
}

function oomScoreAdj(c: PodContainer, qos: QosClass, memoryCapacityBytes: number): number {
  if (qos === 'Guaranteed') return guaranteedOomScoreAdj;
  if (qos === 'BestEffort') return bestEffortOomScoreAdj;
  const request = c.resources.requests.memory ?? 0;
  if (memoryCapacityBytes <= 0) return bestEffortOomScoreAdj - 1;
  const adj = 1000 - Math.floor((1000 * request) / memoryCapacityBytes);
  // Burstable always above Guaranteed and below BestEffort.
  if (adj < 1000 + guaranteedOomScoreAdj) return 1000 + guaranteedOomScoreAdj;
  if (adj >= bestEffortOomScoreAdj) return bestEffortOomScoreAdj - 1;
  return adj;
}

/** Shares, CFS quota and memory limit from a CPU request (cores) and limits (kubelet's calculateLinuxResources). */
function cgroupResources(cpuRequest: number, cpuLimit: number | undefined, memoryLimit: number | undefined): Omit<LinuxResources, 'oomScoreAdj'> {
  const milli = Math.round(cpuRequest * 1000);
  const out: Omit<LinuxResources, 'oomScoreAdj'> = { cpuShares: milli === 0 ? minShares : Math.min(maxShares, Math.max(minShares, Math.floor((milli * sharesPerCpu) / 1000))) };
  if (cpuLimit) {
    out.cpuPeriod = cpuPeriodUs;
    out.cpuQuota = Math.max(minQuotaUs, Math.floor((Math.round(cpuLimit * 1000) * cpuPeriodUs) / 1000));
  }
  if (memoryLimit) out.memoryLimitInBytes = Math.floor(memoryLimit);
  return out;
}

/** CreateContainer's linux.resources for container `c` of a pod of class `qos` on a node with this much memory. */
export function linuxResources(c: PodContainer, qos: QosClass, memoryCapacityBytes: number): LinuxResources {
  const { requests, limits } = c.resources;
  return { ...cgroupResources(requests.cpu ?? limits.cpu ?? 0, limits.cpu, limits.memory), oomScoreAdj: oomScoreAdj(c, qos, memoryCapacityBytes) };
}

/**
 * The pod's resources for RunPodSandbox's linux.resources (kubelet's
 * calculateSandboxResources): what the pod needs at its peak. The app
 * containers and sidecars run together; a plain init container runs alone,
 * so it counts only where it asks for more than all of them together.
 */
export function sandboxResources(pod: PodManifest): Omit<LinuxResources, 'oomScoreAdj'> {
  const together = [...pod.initContainers.filter((c) => c.restartPolicy === 'Always'), ...pod.containers];
  const alone = pod.initContainers.filter((c) => c.restartPolicy !== 'Always');
  const peak = (f: (c: PodContainer) => number | undefined): number => Math.max(together.reduce((n, c) => n + (f(c) ?? 0), 0), ...alone.map((c) => f(c) ?? 0));
  return cgroupResources(peak((c) => c.resources.requests.cpu), peak((c) => c.resources.limits.cpu), peak((c) => c.resources.limits.memory));
}
