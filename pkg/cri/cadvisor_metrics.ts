import type { InterfaceCounters } from '../netns/net_dev.js';
import type { ContainerUsage } from '../sandbox/stats_collector.js';

// The container metrics the CRI metrics RPCs serve (ListMetricDescriptors,
// ListPodSandboxMetrics), under cadvisor's names, labels and meanings, as
// kubelet's CRI metrics collector re-exports them in place of cadvisor. One
// table: a metric's descriptor and how its values are read live together.
// Values are whole numbers (the CRI's UInt64Value): seconds are whole
// seconds, as CRI-O gives them.

export type MetricKind = 'COUNTER' | 'GAUGE';

/** What one container's values are read from. */
export interface ContainerView {
  usage: ContainerUsage;
  /** When the container started, ns since the epoch. */
  startedAt: bigint;
  at: bigint;
  files: { fds: number; sockets: number };
  /** The filesystem holding the writable layer, and what the layer uses. */
  fs: { device: string; usedBytes: bigint; inodesTotal: bigint; inodesFree: bigint; capacityBytes: bigint };
}

/** Label values after the base ones (id, name, image), and the value. */
export type MetricValue = [labels: string[], value: bigint];

interface Row<V> {
  name: string;
  help: string;
  kind: MetricKind;
  /** Label keys after the base ones. */
  labels: readonly string[];
  /** undefined: described, but not measurable here (no value is sent). */
  values?: (v: V) => MetricValue[];
}

/**
 * id, name, image: the container's (or, for network metrics, the pod's);
 * namespace, pod, container: what kubelet's cadvisor exposition adds from the
 * Kubernetes labels and dashboards select on (container is empty on the pod's
 * own series, as cadvisor leaves it for the sandbox). The runtime sends them
 * so any CRI metrics consumer (this node half, or kubelet's CRI collector)
 * shows them without a lookup of its own.
 */
export const baseLabelKeys = ['id', 'name', 'image', 'namespace', 'pod', 'container'] as const;

const second = 1_000_000_000n;
const one = (value: bigint): MetricValue[] => [[[], value]];
const big = (n: number | undefined): bigint => BigInt(Math.max(0, Math.trunc(n ?? 0)));
const faults = (u: ContainerUsage): MetricValue[] => {
  const minor = u.memory.pageFaults - u.memory.majorPageFaults;
  return [
    [['pgfault', 'container'], minor],
    [['pgmajfault', 'container'], u.memory.majorPageFaults],
    [['pgfault', 'hierarchy'], minor],
    [['pgmajfault', 'hierarchy'], u.memory.majorPageFaults],
  ];
};

export const containerMetrics: ReadonlyArray<Row<ContainerView>> = [
  { name: 'container_cpu_usage_seconds_total', help: 'Cumulative cpu time consumed in seconds.', kind: 'COUNTER', labels: ['cpu'], values: (v) => [[['total'], v.usage.cpu.usageNs / second]] },
  { name: 'container_cpu_user_seconds_total', help: 'Cumulative user cpu time consumed in seconds.', kind: 'COUNTER', labels: [], values: (v) => one(v.usage.cpu.userNs / second) },
  { name: 'container_cpu_system_seconds_total', help: 'Cumulative system cpu time consumed in seconds.', kind: 'COUNTER', labels: [], values: (v) => one(v.usage.cpu.systemNs / second) },
  { name: 'container_cpu_cfs_periods_total', help: 'Number of elapsed enforcement period intervals.', kind: 'COUNTER', labels: [], values: (v) => one(v.usage.cpu.periods) },
  { name: 'container_cpu_cfs_throttled_periods_total', help: 'Number of throttled period intervals.', kind: 'COUNTER', labels: [], values: (v) => one(v.usage.cpu.throttledPeriods) },
  { name: 'container_cpu_cfs_throttled_seconds_total', help: 'Total time duration the container has been throttled.', kind: 'COUNTER', labels: [], values: (v) => one(v.usage.cpu.throttledNs / second) },
  { name: 'container_memory_cache', help: 'Number of bytes of page cache memory.', kind: 'GAUGE', labels: [], values: (v) => one(v.usage.memory.cacheBytes) },
  { name: 'container_memory_rss', help: 'Size of RSS in bytes.', kind: 'GAUGE', labels: [], values: (v) => one(v.usage.memory.rssBytes) },
  { name: 'container_memory_kernel_usage', help: 'Size of kernel memory allocated in bytes.', kind: 'GAUGE', labels: [], values: (v) => one(v.usage.memory.kernelBytes) },
  { name: 'container_memory_mapped_file', help: 'Size of memory mapped files in bytes.', kind: 'GAUGE', labels: [], values: (v) => one(v.usage.memory.mappedFileBytes) },
  { name: 'container_memory_swap', help: 'Container swap usage in bytes.', kind: 'GAUGE', labels: [], values: (v) => one(v.usage.memory.swapBytes) },
  { name: 'container_memory_failcnt', help: 'Number of memory usage hits limits', kind: 'COUNTER', labels: [], values: (v) => one(v.usage.memory.failcnt) },
  { name: 'container_memory_usage_bytes', help: 'Current memory usage in bytes, including all memory regardless of when it was accessed', kind: 'GAUGE', labels: [], values: (v) => one(v.usage.memory.usageBytes) },
  { name: 'container_memory_max_usage_bytes', help: 'Maximum memory usage recorded in bytes', kind: 'GAUGE', labels: [], values: (v) => one(v.usage.memory.maxUsageBytes ?? v.usage.memory.usageBytes) },
  { name: 'container_memory_working_set_bytes', help: 'Current working set in bytes.', kind: 'GAUGE', labels: [], values: (v) => one(v.usage.memory.workingSetBytes) },
  { name: 'container_memory_failures_total', help: 'Cumulative count of memory allocation failures.', kind: 'COUNTER', labels: ['failure_type', 'scope'], values: (v) => faults(v.usage) },
  { name: 'container_oom_events_total', help: 'Count of out of memory events observed for the container', kind: 'COUNTER', labels: [], values: (v) => one(v.usage.memory.oomEvents) },
  { name: 'container_processes', help: 'Number of processes running inside the container.', kind: 'GAUGE', labels: [], values: (v) => one(BigInt(v.usage.processes)) },
  { name: 'container_threads', help: 'Number of threads running inside the container', kind: 'GAUGE', labels: [], values: (v) => one(BigInt(v.usage.threads)) },
  { name: 'container_threads_max', help: 'Maximum number of threads allowed inside the container, infinity if value is zero', kind: 'GAUGE', labels: [], values: (v) => one(v.usage.threadsMax ?? 0n) },
  { name: 'container_file_descriptors', help: 'Number of open file descriptors for the container.', kind: 'GAUGE', labels: [], values: (v) => one(BigInt(v.files.fds)) },
  { name: 'container_sockets', help: 'Number of open sockets for the container.', kind: 'GAUGE', labels: [], values: (v) => one(BigInt(v.files.sockets)) },
  { name: 'container_fs_usage_bytes', help: 'Number of bytes that are consumed by the container on this filesystem.', kind: 'GAUGE', labels: ['device'], values: (v) => [[[v.fs.device], v.fs.usedBytes]] },
  { name: 'container_fs_limit_bytes', help: 'Number of bytes that can be consumed by the container on this filesystem.', kind: 'GAUGE', labels: ['device'], values: (v) => [[[v.fs.device], v.fs.capacityBytes]] },
  { name: 'container_fs_inodes_total', help: 'Number of Inodes', kind: 'GAUGE', labels: ['device'], values: (v) => [[[v.fs.device], v.fs.inodesTotal]] },
  { name: 'container_fs_inodes_free', help: 'Number of available Inodes', kind: 'GAUGE', labels: ['device'], values: (v) => [[[v.fs.device], v.fs.inodesFree]] },
  // Per-device block I/O needs the io (blkio) controller of a cgroup of the container's own.
  { name: 'container_fs_reads_bytes_total', help: 'Cumulative count of bytes read', kind: 'COUNTER', labels: ['device'] },
  { name: 'container_fs_reads_total', help: 'Cumulative count of reads completed', kind: 'COUNTER', labels: ['device'] },
  { name: 'container_fs_writes_bytes_total', help: 'Cumulative count of bytes written', kind: 'COUNTER', labels: ['device'] },
  { name: 'container_fs_writes_total', help: 'Cumulative count of writes completed', kind: 'COUNTER', labels: ['device'] },
  { name: 'container_blkio_device_usage_total', help: 'Blkio device bytes usage', kind: 'COUNTER', labels: ['device', 'major', 'minor', 'operation'] },
  // The spec is what runc was given: where no limit can be enforced it was given none (0, unlimited).
  { name: 'container_spec_cpu_period', help: 'CPU period of the container.', kind: 'GAUGE', labels: [], values: (v) => one(big(v.usage.enforced.cpu?.period)) },
  { name: 'container_spec_cpu_quota', help: 'CPU quota of the container.', kind: 'GAUGE', labels: [], values: (v) => one(big(v.usage.enforced.cpu?.quota)) },
  { name: 'container_spec_cpu_shares', help: 'CPU share of the container.', kind: 'GAUGE', labels: [], values: (v) => one(big(v.usage.enforced.cpu?.shares)) },
  { name: 'container_spec_memory_limit_bytes', help: 'Memory limit for the container.', kind: 'GAUGE', labels: [], values: (v) => one(big(v.usage.enforced.memory?.limit)) },
  { name: 'container_spec_memory_swap_limit_bytes', help: 'Memory swap limit for the container.', kind: 'GAUGE', labels: [], values: (v) => one(big(v.usage.enforced.memory?.swap)) },
  { name: 'container_start_time_seconds', help: 'Start time of the container since unix epoch in seconds.', kind: 'GAUGE', labels: [], values: (v) => one(v.startedAt / second) },
  { name: 'container_last_seen', help: 'Last time a container was seen by the exporter', kind: 'GAUGE', labels: [], values: (v) => one(v.at / second) },
];

/** The pod's interfaces, as cadvisor reports them for the pod's network namespace. */
export const networkMetrics: ReadonlyArray<Row<readonly InterfaceCounters[]>> = (
  [
    ['receive_bytes_total', 'Cumulative count of bytes received', (c) => c.rxBytes],
    ['receive_packets_total', 'Cumulative count of packets received', (c) => c.rxPackets],
    ['receive_packets_dropped_total', 'Cumulative count of packets dropped while receiving', (c) => c.rxDropped],
    ['receive_errors_total', 'Cumulative count of errors encountered while receiving', (c) => c.rxErrors],
    ['transmit_bytes_total', 'Cumulative count of bytes transmitted', (c) => c.txBytes],
    ['transmit_packets_total', 'Cumulative count of packets transmitted', (c) => c.txPackets],
    ['transmit_packets_dropped_total', 'Cumulative count of packets dropped while transmitting', (c) => c.txDropped],
    ['transmit_errors_total', 'Cumulative count of errors encountered while transmitting', (c) => c.txErrors],
  ] as Array<[string, string, (c: InterfaceCounters) => bigint]>
).map(([name, help, pick]) => ({
  name: `container_network_${name}`,
  help,
  kind: 'COUNTER' as const,
  labels: ['interface'],
  values: (ifaces: readonly InterfaceCounters[]) => ifaces.map((c): MetricValue => [[c.name], pick(c)]),
}));
