import { readFile } from 'node:fs/promises';

// A container's resource use from its own cgroup v2 folder, on hosts that
// delegate a cgroup v2 subtree to the user (runc then creates the folder at
// the spec's linux.cgroupsPath under the v2 mount). The numbers mean what
// containerd's CRI plugin and cadvisor make of the same files.

/** Cumulative CPU numbers, ns (StatsCollector's ContainerUsage has the same, from either source). */
export interface CpuTimes {
  usageNs: bigint;
  userNs: bigint;
  systemNs: bigint;
  periods: bigint;
  throttledPeriods: bigint;
  throttledNs: bigint;
}

export interface MemoryNumbers {
  /** Every page charged to the container, page cache included (memory.current). */
  usageBytes: bigint;
  /** usage − inactive_file: what kubelet evicts on. */
  workingSetBytes: bigint;
  rssBytes: bigint;
  cacheBytes: bigint;
  mappedFileBytes: bigint;
  kernelBytes: bigint;
  swapBytes: bigint;
  pageFaults: bigint;
  majorPageFaults: bigint;
  /** The enforced limit (memory.max); undefined when there is none. */
  limitBytes: bigint | undefined;
  maxUsageBytes: bigint | undefined;
  /** Times usage hit the limit (memory.events "max", cgroup v1's failcnt). */
  failcnt: bigint;
  oomEvents: bigint;
}

export interface CgroupUsage {
  cpu: CpuTimes;
  memory: MemoryNumbers;
  processes: bigint;
  processesMax: bigint | undefined;
}

/** undefined when the folder has no cpu.stat (no such cgroup, or not ours to read). */
export async function readCgroupUsage(dir: string): Promise<CgroupUsage | undefined> {
  const read = (f: string): Promise<string> => readFile(`${dir}/${f}`, 'utf8').catch(() => '');
  const cpuStat = await read('cpu.stat');
  if (cpuStat === '') return undefined;
  const [current, max, memStat, events, peak, swap, pids, pidsMax] = await Promise.all([
    read('memory.current'),
    read('memory.max'),
    read('memory.stat'),
    read('memory.events'),
    read('memory.peak'),
    read('memory.swap.current'),
    read('pids.current'),
    read('pids.max'),
  ]);
  const cpu = keyed(cpuStat);
  const mem = keyed(memStat);
  const ev = keyed(events);
  const usageBytes = number(current) ?? 0n;
  const inactiveFile = mem.get('inactive_file') ?? 0n;
  return {
    cpu: {
      usageNs: (cpu.get('usage_usec') ?? 0n) * 1000n,
      userNs: (cpu.get('user_usec') ?? 0n) * 1000n,
      systemNs: (cpu.get('system_usec') ?? 0n) * 1000n,
      periods: cpu.get('nr_periods') ?? 0n,
      throttledPeriods: cpu.get('nr_throttled') ?? 0n,
      throttledNs: (cpu.get('throttled_usec') ?? 0n) * 1000n,
    },
    memory: {
      usageBytes,
      workingSetBytes: usageBytes > inactiveFile ? usageBytes - inactiveFile : 0n,
      rssBytes: mem.get('anon') ?? 0n,
      cacheBytes: mem.get('file') ?? 0n,
      mappedFileBytes: mem.get('file_mapped') ?? 0n,
      kernelBytes: mem.get('kernel') ?? (mem.get('kernel_stack') ?? 0n) + (mem.get('slab') ?? 0n),
      swapBytes: number(swap) ?? 0n,
      pageFaults: mem.get('pgfault') ?? 0n,
      majorPageFaults: mem.get('pgmajfault') ?? 0n,
      limitBytes: number(max),
      maxUsageBytes: number(peak),
      failcnt: ev.get('max') ?? 0n,
      oomEvents: ev.get('oom_kill') ?? 0n,
    },
    processes: number(pids) ?? 0n,
    processesMax: number(pidsMax),
  };
}

/** "key value" lines (cpu.stat, memory.stat, memory.events). */
function keyed(text: string): Map<string, bigint> {
  const m = new Map<string, bigint>();
  for (const line of text.split('\n')) {
    const [k, v] = line.trim().split(/\s+/);
    if (k && v && /^\d+$/.test(v)) m.set(k, BigInt(v));
  }
  return m;
}

/** A single-number file; "max" (unlimited) and missing files are undefined. */
function number(text: string): bigint | undefined {
  const t = text.trim();
  return /^\d+$/.test(t) ? BigInt(t) : undefined;
}
