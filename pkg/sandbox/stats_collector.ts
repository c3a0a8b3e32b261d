import { readFile } from 'node:fs/promises';
import { join } from 'node:path';

import type { Logger } from '../log/logger.js';
import type { OciResources } from './oci_spec_types.js';
import { type InterfaceCounters, readNetDev } from '../netns/net_dev.js';
import { type CgroupUsage, type CpuTimes, type MemoryNumbers, readCgroupUsage } from './cgroup_stats.js';
import { openFiles, processesByRoot, type ProcessUsage, rootKeyOf } from './proc_accounting.js';

// The resource use of running containers, for the CRI stats and metrics
// RPCs. Source, per container: its cgroup v2 folder when the host delegates
// a subtree (the spec has a linux.cgroupsPath), else its processes' own
// accounting in /proc (proc_accounting.ts). Which one is used is logged once
// and told by describe() (Status verbose info).
//
// The collector keeps the previous sample of each container and pod: the
// CPU rate (usage_nano_cores) is the change between two samples, as kubelet
// and containerd compute it; and with /proc, the CPU time of processes that
// ended without a parent in the container to reap them (exec'd commands) is
// kept, so usage never goes backwards.

export type StatsSource = 'cgroup' | 'procfs';

export interface StatsTarget {
  id: string;
  /** The rootfs as mounted for runc: its processes' /proc/PID/root. */
  rootfs: string;
  /** The OCI bundle; its config.json names the cgroup, if any. */
  bundle: string;
}

export interface ContainerUsage {
  source: StatsSource;
  /** Nanoseconds since the epoch. */
  timestamp: bigint;
  /** nanoCores: cores used in billionths since the previous sample; undefined on the first. */
  cpu: CpuTimes & { nanoCores: bigint | undefined };
  memory: MemoryNumbers;
  processes: number;
  threads: number;
  /** pids.max; undefined when unlimited. */
  threadsMax: bigint | undefined;
  /** The container's processes now (for network counters and open files). */
  pids: number[];
  /** The resources runc was given (the bundle's linux.resources): none where limits cannot be enforced. */
  enforced: OciResources;
}

export interface StatsCollectorOptions {
  log: Logger;
  /** Why there is no cgroup to read, when there is none (detectCgroups().reason). */
  noCgroupReason: string;
  cgroupRoot?: string;
  procRoot?: string;
  now?: () => bigint;
}

/** Samples closer together than this give a noisy rate: the previous rate stands. */
const minRateWindowNs = 1_000_000_000n;

/** usage_nano_cores from two samples of cumulative CPU time, per key (a container or a pod). */
export class CpuRate {
  private readonly prev = new Map<string, { at: bigint; usageNs: bigint; nanoCores: bigint | undefined }>();

  of(key: string, at: bigint, usageNs: bigint): bigint | undefined {
    const p = this.prev.get(key);
    if (p && at - p.at < minRateWindowNs) return p.nanoCores;
    const nanoCores = p && usageNs >= p.usageNs ? ((usageNs - p.usageNs) * 1_000_000_000n) / (at - p.at) : undefined;
    this.prev.set(key, { at, usageNs, nanoCores });
    return nanoCores;
  }

  /** Drops what is kept for keys no longer asked about. */
  keepOnly(keys: ReadonlySet<string>): void {
    for (const k of this.prev.keys()) if (!keys.has(k)) this.prev.delete(k);
  }
}

interface BundleSpec {
  cgroupDir: string | undefined;
  resources: OciResources;
}

interface ProcHistory {
  /** Processes of the last sample, by pid:starttime. */
  seen: Map<string, ProcessUsage>;
  /** The largest working set sampled. */
  peakBytes: bigint;
  /** What processes that ended without a parent in the container used: */
  userNs: bigint;
  systemNs: bigint;
  pageFaults: bigint;
  majorPageFaults: bigint;
}

export class StatsCollector {
  readonly rates = new CpuRate();
  private readonly specOf = new Map<string, BundleSpec>();
  private readonly history = new Map<string, ProcHistory>();
  private readonly sourcesLogged = new Set<StatsSource>();
  private lastSource: StatsSource | undefined;
  private readonly cgroupRoot: string;
  private readonly procRoot: string;
  private readonly now: () => bigint;

  constructor(private readonly o: StatsCollectorOptions) {
    this.cgroupRoot = o.cgroupRoot ?? '/sys/fs/cgroup';
    this.procRoot = o.procRoot ?? '/proc';
    this.now = o.now ?? (() => BigInt(Date.now()) * 1_000_000n);
  }

  /** Where the numbers come from, for Status verbose info. */
  describe(): { source: string; reason: string } {
    // Before any sample: what the host allows.
    if (this.lastSource === 'cgroup' || (this.lastSource === undefined && this.o.noCgroupReason === '')) return { source: 'cgroup v2 (delegated subtree): cpu.stat, memory.current, memory.stat, pids.current', reason: '' };
    return {
      source:
        "procfs: the processes whose root is the container's rootfs (stat utime+stime, smaps_rollup Pss, status RSS); no page cache per container, and an exec'd command that starts and ends between two samples is not seen",
      reason: this.o.noCgroupReason || 'the containers have no cgroup of their own',
    };
  }

  /** Usage of each running container given; a container whose numbers cannot be read is left out. */
  async sample(targets: readonly StatsTarget[]): Promise<Map<string, ContainerUsage>> {
    const out = new Map<string, ContainerUsage>();
    const byProcs: Array<{ t: StatsTarget; root: string; spec: BundleSpec }> = [];
    await Promise.all(
      targets.map(async (t) => {
        const spec = await this.bundleSpec(t);
        const cg = spec.cgroupDir ? await readCgroupUsage(spec.cgroupDir) : undefined;
        if (spec.cgroupDir && cg) {
          out.set(t.id, await this.fromCgroup(t.id, spec, cg));
          return;
        }
        const root = await rootKeyOf(t.rootfs);
        if (root) byProcs.push({ t, root, spec });
      }),
    );
    if (byProcs.length > 0) {
      const procs = await processesByRoot(new Set(byProcs.map((b) => b.root)), this.procRoot);
      const at = this.now();
      for (const { t, root, spec } of byProcs) out.set(t.id, this.fromProcesses(t.id, at, spec, procs.get(root) ?? []));
    }
    return out;
  }

  /** The interface counters of the network namespace `pid` is in ('self': ours). */
  netDev(pid: number | 'self'): Promise<InterfaceCounters[]> {
    return readNetDev(`${this.procRoot}/${pid}/net/dev`);
  }

  /** Open file descriptors and sockets of a process; undefined when it is gone. */
  openFiles(pid: number): Promise<{ fds: number; sockets: number } | undefined> {
    return openFiles(pid, this.procRoot);
  }

  /** Drops what is kept for containers and pods that are gone. */
  keepOnly(ids: ReadonlySet<string>): void {
    this.rates.keepOnly(ids);
    for (const m of [this.specOf, this.history]) for (const k of m.keys()) if (!ids.has(k)) m.delete(k);
  }

  /** What the bundle's config.json says of cgroups and resources; it does not change while the container lives. */
  private async bundleSpec(t: StatsTarget): Promise<BundleSpec> {
    const known = this.specOf.get(t.id);
    if (known) return known;
    let spec: BundleSpec = { cgroupDir: undefined, resources: {} };
    try {
      const linux = (JSON.parse(await readFile(join(t.bundle, 'config.json'), 'utf8')) as { linux?: { cgroupsPath?: string; resources?: OciResources } }).linux;
      const p = linux?.cgroupsPath;
      // cgroupfs driver: a path from the root of the v2 hierarchy (oci_spec.ts writes it so).
      spec = { cgroupDir: p && p.startsWith('/') ? join(this.cgroupRoot, p) : undefined, resources: linux?.resources ?? {} };
    } catch {
      // No bundle (removed meanwhile): nothing enforced, nothing to read but /proc.
    }
    this.specOf.set(t.id, spec);
    return spec;
  }

  private async fromCgroup(id: string, spec: BundleSpec, cg: CgroupUsage): Promise<ContainerUsage> {
    const dir = spec.cgroupDir!;
    const at = this.now();
    this.noteSource('cgroup');
    const list = async (f: string): Promise<number[]> =>
      (await readFile(join(dir, f), 'utf8').catch(() => ''))
        .split('\n')
        .filter((l) => /^\d+$/.test(l))
        .map(Number);
    const [pids, threads] = await Promise.all([list('cgroup.procs'), list('cgroup.threads')]);
    return {
      source: 'cgroup',
      timestamp: at,
      cpu: { ...cg.cpu, nanoCores: this.rates.of(id, at, cg.cpu.usageNs) },
      memory: cg.memory,
      processes: Number(cg.processes),
      threads: threads.length,
      threadsMax: cg.processesMax,
      pids,
      enforced: spec.resources,
    };
  }

  private fromProcesses(id: string, at: bigint, spec: BundleSpec, procs: readonly ProcessUsage[]): ContainerUsage {
    this.noteSource('procfs');
    const d = this.historyOf(id, procs);
    const sum = (f: (p: ProcessUsage) => bigint): bigint => procs.reduce((a, p) => a + f(p), 0n);
    const userNs = d.userNs + sum((p) => p.userNs);
    const systemNs = d.systemNs + sum((p) => p.systemNs);
    const usageNs = userNs + systemNs;
    const workingSet = sum((p) => p.memoryBytes);
    if (workingSet > d.peakBytes) d.peakBytes = workingSet;
    return {
      source: 'procfs',
      timestamp: at,
      // No limit is enforced without a cgroup: nothing is throttled, no limit is hit.
      cpu: { usageNs, userNs, systemNs, nanoCores: this.rates.of(id, at, usageNs), periods: 0n, throttledPeriods: 0n, throttledNs: 0n },
      memory: {
        // Page cache cannot be told apart per container without a cgroup: usage is the working set.
        workingSetBytes: workingSet,
        usageBytes: workingSet,
        rssBytes: sum((p) => p.rssAnonBytes),
        cacheBytes: sum((p) => p.rssFileBytes + p.rssShmemBytes),
        mappedFileBytes: sum((p) => p.rssFileBytes),
        kernelBytes: 0n,
        swapBytes: 0n,
        pageFaults: d.pageFaults + sum((p) => p.pageFaults),
        majorPageFaults: d.majorPageFaults + sum((p) => p.majorPageFaults),
        limitBytes: undefined,
        // The largest sampled: peaks between two samples are not seen.
        maxUsageBytes: d.peakBytes,
        failcnt: 0n,
        oomEvents: 0n,
      },
      processes: procs.length,
      threads: procs.reduce((a, p) => a + p.threads, 0),
      threadsMax: undefined,
      pids: procs.map((p) => p.pid),
      enforced: spec.resources,
    };
  }

  /**
   * Processes of the last sample that are gone: one whose parent is (or
   * was) in the container was reaped by it, and its time is in the parent's
   * cutime and cstime; any other's (an exec'd command, a child of runc) would
   * be lost, so it is kept here.
   */
  private historyOf(id: string, procs: readonly ProcessUsage[]): ProcHistory {
    const d = this.history.get(id) ?? { seen: new Map(), peakBytes: 0n, userNs: 0n, systemNs: 0n, pageFaults: 0n, majorPageFaults: 0n };
    const now = new Map(procs.map((p) => [`${p.pid}:${p.startTime}`, p]));
    const inside = new Set([...procs, ...d.seen.values()].map((p) => p.pid));
    for (const [k, p] of d.seen) {
      if (now.has(k) || inside.has(p.ppid)) continue;
      d.userNs += p.userNs;
      d.systemNs += p.systemNs;
      d.pageFaults += p.pageFaults;
      d.majorPageFaults += p.majorPageFaults;
    }
    d.seen = now;
    this.history.set(id, d);
    return d;
  }

  private noteSource(s: StatsSource): void {
    this.lastSource = s;
    if (this.sourcesLogged.has(s)) return;
    this.sourcesLogged.add(s);
    if (s === 'cgroup') this.o.log.info('container stats from their cgroup v2 folders (delegated subtree)');
    else this.o.log.info("container stats from /proc: each container's processes' own accounting (no cgroup of their own)", { reason: this.o.noCgroupReason });
  }
}
