import { readdir, readFile, stat, statfs } from 'node:fs/promises';

import type { CriClients } from '../../proto/client.js';
import type { Container__Output } from '../../proto/generated/runtime/v1/Container.js';
import type { ContainerStats__Output } from '../../proto/generated/runtime/v1/ContainerStats.js';
import type { CpuUsage__Output } from '../../proto/generated/runtime/v1/CpuUsage.js';
import type { FilesystemUsage__Output } from '../../proto/generated/runtime/v1/FilesystemUsage.js';
import type { ImageFsInfoResponse__Output } from '../../proto/generated/runtime/v1/ImageFsInfoResponse.js';
import type { MemoryUsage__Output } from '../../proto/generated/runtime/v1/MemoryUsage.js';
import type { NetworkUsage__Output } from '../../proto/generated/runtime/v1/NetworkUsage.js';
import type { PodSandbox__Output } from '../../proto/generated/runtime/v1/PodSandbox.js';
import type { PodSandboxStats__Output } from '../../proto/generated/runtime/v1/PodSandboxStats.js';
import { criCall } from './kubelet_pods.js';

// /stats/summary: kubelet's Summary API (stats/v1alpha1), what metrics-server
// and `kubectl top` read. The pods' and containers' numbers are the
// runtime's, through CRI ListPodSandboxStats (kubelet's CRI stats provider
// does the same), the image filesystem is ImageFsInfo's, and the node's own
// come from /proc and statfs as an ordinary user can read them.

type Json = Record<string, unknown>;

/** metav1.Time as it marshals: RFC 3339 to the second. */
function rfc3339(ms: number): string {
  return new Date(ms).toISOString().replace(/\.\d+Z$/, 'Z');
}
const nsTime = (ns: string | undefined): string => rfc3339(ns && ns !== '0' ? Number(BigInt(ns) / 1000000n) : Date.now());
const num = (v: { value: string } | null | undefined): number | undefined => (v ? Number(v.value) : undefined);

/** Drops the fields that are undefined (the Summary API leaves out what it does not know). */
function defined(o: Json): Json {
  return Object.fromEntries(Object.entries(o).filter(([, v]) => v !== undefined));
}

function cpuOf(c: CpuUsage__Output | null | undefined): Json | undefined {
  if (!c) return undefined;
  return defined({ time: nsTime(c.timestamp), usageNanoCores: num(c.usageNanoCores), usageCoreNanoSeconds: num(c.usageCoreNanoSeconds) });
}

function memoryOf(m: MemoryUsage__Output | null | undefined): Json | undefined {
  if (!m) return undefined;
  return defined({
    time: nsTime(m.timestamp),
    availableBytes: num(m.availableBytes),
    usageBytes: num(m.usageBytes),
    workingSetBytes: num(m.workingSetBytes),
    rssBytes: num(m.rssBytes),
    pageFaults: num(m.pageFaults),
    majorPageFaults: num(m.majorPageFaults),
  });
}

function networkOf(n: NetworkUsage__Output | null | undefined): Json | undefined {
  if (!n) return undefined;
  const iface = (i: NonNullable<NetworkUsage__Output['defaultInterface']>): Json =>
    defined({ name: i.name, rxBytes: num(i.rxBytes), rxErrors: num(i.rxErrors), txBytes: num(i.txBytes), txErrors: num(i.txErrors) });
  return defined({ time: nsTime(n.timestamp), ...(n.defaultInterface ? iface(n.defaultInterface) : {}), interfaces: n.interfaces.map(iface) });
}

interface FsCapacity {
  capacityBytes: number;
  availableBytes: number;
  inodes: number;
  inodesFree: number;
}

async function capacityOf(path: string): Promise<FsCapacity | undefined> {
  const s = await statfs(path).catch(() => undefined);
  if (!s) return undefined;
  return { capacityBytes: s.blocks * s.bsize, availableBytes: s.bavail * s.bsize, inodes: s.files, inodesFree: s.ffree };
}

function fsOf(u: FilesystemUsage__Output | null | undefined, cap: FsCapacity | undefined): Json | undefined {
  if (!u && !cap) return undefined;
  return defined({ time: nsTime(u?.timestamp), ...cap, usedBytes: num(u?.usedBytes), inodesUsed: num(u?.inodesUsed) });
}

/** /proc/stat's busy time of all CPUs, in ns (USER_HZ is 100 on Linux). */
export function cpuBusyNs(procStat: string): bigint | undefined {
  const m = /^cpu\s+(.*)$/m.exec(procStat);
  if (!m) return undefined;
  const f = m[1]!.trim().split(/\s+/).map((x) => BigInt(x));
  // user nice system idle iowait irq softirq steal: idle and iowait are not busy.
  const busy = [0, 1, 2, 5, 6, 7].reduce((s, i) => s + (f[i] ?? 0n), 0n);
  return busy * 10000000n;
}

/** The node's memory as cadvisor reports the machine's: usage = total - free, working set = usage - inactive file pages. */
export function nodeMemory(meminfo: string): { capacity: number; usage: number; workingSet: number } {
  const kb = (k: string): number => Number(new RegExp(`^${k.replace(/[()]/g, '\\$&')}:\\s+(\\d+) kB$`, 'm').exec(meminfo)?.[1] ?? 0) * 1024;
  const capacity = kb('MemTotal');
  const usage = capacity - kb('MemFree');
  return { capacity, usage, workingSet: Math.max(0, usage - kb('Inactive(file)')) };
}

export class SummaryProvider {
  private lastCpu: { at: bigint; busy: bigint } | undefined;
  private readonly started = Date.now();

  constructor(
    private readonly o: {
      cri: CriClients;
      nodeName: string;
      /** The filesystem of the node's state (the Summary's node.fs). */
      rootDir: string;
      procRoot?: string;
    },
  ) {}

  private async nodeCpu(): Promise<Json> {
    const now = process.hrtime.bigint();
    const wall = Date.now();
    const busy = cpuBusyNs(await readFile(`${this.o.procRoot ?? '/proc'}/stat`, 'utf8').catch(() => ''));
    let rate: number | undefined;
    if (busy !== undefined && this.lastCpu && now > this.lastCpu.at) rate = Number(((busy - this.lastCpu.busy) * 1000000000n) / (now - this.lastCpu.at));
    if (busy !== undefined) this.lastCpu = { at: now, busy };
    return defined({ time: rfc3339(wall), usageNanoCores: rate, usageCoreNanoSeconds: busy === undefined ? undefined : Number(busy) });
  }

  private async nodeMemory(): Promise<Json> {
    const m = nodeMemory(await readFile(`${this.o.procRoot ?? '/proc'}/meminfo`, 'utf8').catch(() => ''));
    return { time: rfc3339(Date.now()), availableBytes: Math.max(0, m.capacity - m.workingSet), usageBytes: m.usage, workingSetBytes: m.workingSet };
  }

  private async rlimit(): Promise<Json> {
    const proc = this.o.procRoot ?? '/proc';
    const max = Number((await readFile(`${proc}/sys/kernel/pid_max`, 'utf8').catch(() => '')).trim()) || undefined;
    const cur = (await readdir(proc).catch(() => [] as string[])).filter((d) => /^\d+$/.test(d)).length;
    return defined({ time: rfc3339(Date.now()), maxpid: max, curproc: cur });
  }

  async summary(): Promise<Json> {
    const [podStats, sandboxes, containers, imageFs] = await Promise.all([
      criCall<{ stats: PodSandboxStats__Output[] }>(this.o.cri, 'runtime', 'ListPodSandboxStats', { filter: {} }),
      criCall<{ items: PodSandbox__Output[] }>(this.o.cri, 'runtime', 'ListPodSandbox', {}),
      criCall<{ containers: Container__Output[] }>(this.o.cri, 'runtime', 'ListContainers', {}),
      criCall<ImageFsInfoResponse__Output>(this.o.cri, 'image', 'ImageFsInfo', {}),
    ]);
    const sandboxById = new Map(sandboxes.items.map((s) => [s.id, s]));
    const containerById = new Map(containers.containers.map((c) => [c.id, c]));
    const image = imageFs.imageFilesystems[0];
    const imageCap = image?.fsId?.mountpoint ? await capacityOf(image.fsId.mountpoint) : undefined;
    const rootCap = await capacityOf(this.o.rootDir);

    const pods: Json[] = [];
    for (const p of podStats.stats) {
      const s = p.attributes ? sandboxById.get(p.attributes.id) : undefined;
      if (!p.attributes?.metadata || s?.state !== 'SANDBOX_READY') continue;
      const meta = p.attributes.metadata;
      const ctrs: Json[] = [];
      let ephemeral = 0;
      for (const c of p.linux?.containers ?? []) {
        const rec = c.attributes ? containerById.get(c.attributes.id) : undefined;
        // As kubelet, the running containers (an exited one's numbers are its last).
        if (!rec || rec.state !== 'CONTAINER_RUNNING') continue;
        const logs = await this.logUsage(c);
        ephemeral += (num(c.writableLayer?.usedBytes) ?? 0) + (logs.usedBytes ?? 0);
        ctrs.push(
          defined({
            name: c.attributes?.metadata?.name ?? rec.metadata?.name,
            startTime: nsTime(rec.createdAt),
            cpu: cpuOf(c.cpu),
            memory: memoryOf(c.memory),
            rootfs: fsOf(c.writableLayer, imageCap ?? rootCap),
            logs: defined({ time: rfc3339(Date.now()), ...rootCap, ...logs }),
          }),
        );
      }
      pods.push(
        defined({
          podRef: { name: meta.name, namespace: meta.namespace, uid: meta.uid },
          startTime: nsTime(s.createdAt),
          containers: ctrs,
          cpu: cpuOf(p.linux?.cpu),
          memory: memoryOf(p.linux?.memory),
          network: networkOf(p.linux?.network),
          volume: [],
          'ephemeral-storage': defined({ time: rfc3339(Date.now()), ...rootCap, usedBytes: ephemeral }),
          process_stats: p.linux?.process ? defined({ process_count: num(p.linux.process.processCount) }) : undefined,
        }),
      );
    }
    const usedRoot = rootCap ? { usedBytes: rootCap.capacityBytes - rootCap.availableBytes, inodesUsed: rootCap.inodes - rootCap.inodesFree } : {};
    return {
      node: defined({
        nodeName: this.o.nodeName,
        systemContainers: [],
        startTime: rfc3339(this.started),
        cpu: await this.nodeCpu(),
        memory: await this.nodeMemory(),
        fs: rootCap ? { time: rfc3339(Date.now()), ...rootCap, ...usedRoot } : undefined,
        runtime: { imageFs: fsOf(image, imageCap) ?? {} },
        rlimit: await this.rlimit(),
      }),
      pods,
    };
  }

  /** The container's log file, as kubelet counts it for the pod's ephemeral storage. */
  private async logUsage(c: ContainerStats__Output): Promise<{ usedBytes?: number; inodesUsed?: number }> {
    if (!c.attributes?.id) return {};
    const r = await criCall<{ status: { logPath: string } | null }>(this.o.cri, 'runtime', 'ContainerStatus', { containerId: c.attributes.id }).catch(() => undefined);
    const path = r?.status?.logPath;
    if (!path) return {};
    const st = await stat(path).catch(() => undefined);
    return st ? { usedBytes: st.size, inodesUsed: 1 } : {};
  }
}
