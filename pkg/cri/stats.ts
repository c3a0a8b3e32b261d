import type { ContainerStats, NetworkInterfaceUsage, PodSandboxStats } from '../../proto/types.js';
import { type FsUsage, fsUsage } from '../image/fs_usage.js';
import type { CniResult } from '../netns/cni/invoke.js';
import { asSeenFromPeer, type InterfaceCounters } from '../netns/net_dev.js';
import type { ContainerRecord } from '../sandbox/container_store.js';
import type { SandboxRecord } from '../sandbox/sandbox_store.js';
import type { ContainerUsage } from '../sandbox/stats_collector.js';
import { refresh } from './containers.js';
import type { CriContext } from './context.js';
import { podInterface } from './pod_network.js';

// One sampling of containers and pods, shared by the stats RPCs
// (container_stats*.ts, sandbox_stats*.ts) and the metrics RPC
// (sandbox_metrics_list.ts). Running containers get CPU, memory and process
// numbers (StatsCollector); created and exited ones are listed with their
// writable layer only, as nothing runs in them.

export interface ContainerSample {
  record: ContainerRecord;
  /** Nanoseconds since the epoch. */
  at: bigint;
  /** undefined unless the container runs. */
  usage: ContainerUsage | undefined;
  writableLayer: FsUsage | undefined;
}

export interface PodSample {
  sandbox: SandboxRecord;
  at: bigint;
  containers: ContainerSample[];
  /** The pod's own interfaces (loopback left out); undefined for host-network pods. */
  network: InterfaceCounters[] | undefined;
}

const nowNs = (): bigint => BigInt(Date.now()) * 1_000_000n;

export async function sampleContainers(records: readonly ContainerRecord[], ctx: CriContext): Promise<ContainerSample[]> {
  const c = ctx.containers;
  const fresh = await Promise.all(records.map((r) => refresh(r, c)));
  const running = fresh.filter((r) => r.state === 'CONTAINER_RUNNING');
  const usage = await c.stats.sample(running.map((r) => ({ id: r.id, rootfs: r.rootfs, bundle: r.bundle })));
  const at = nowNs();
  return Promise.all(
    fresh.map(async (r) => ({
      record: r,
      at,
      usage: usage.get(r.id),
      writableLayer: await fsUsage(await c.rootfs.writableDir(r.id)).catch(() => undefined),
    })),
  );
}

export async function samplePods(sandboxes: readonly SandboxRecord[], ctx: CriContext): Promise<PodSample[]> {
  const ids = new Set(sandboxes.map((s) => s.id));
  const containers = await sampleContainers(
    ctx.containers.store.list().filter((r) => ids.has(r.sandboxId)),
    ctx,
  );
  const at = nowNs();
  return Promise.all(
    sandboxes.map(async (sandbox) => {
      const mine = containers.filter((s) => s.record.sandboxId === sandbox.id);
      return { sandbox, at, containers: mine, network: await podNetwork(sandbox, mine, ctx) };
    }),
  );
}

/** Forgets the previous samples of containers and pods that no longer exist. */
export function forgetGone(ctx: CriContext): void {
  ctx.containers.stats.keepOnly(new Set([...ctx.containers.store.list().map((r) => r.id), ...ctx.pods.store.list().map((s) => s.id)]));
}

/**
 * /proc/PID/net/dev of any process in the pod is the pod's namespace. With
 * none running, the host end of the pod's veth (in the node's namespace,
 * ours) counts the same traffic the other way round.
 */
async function podNetwork(sandbox: SandboxRecord, containers: readonly ContainerSample[], ctx: CriContext): Promise<InterfaceCounters[] | undefined> {
  if (sandbox.hostNetwork || !sandbox.namespaces.net) return undefined;
  const stats = ctx.containers.stats;
  for (const pid of containers.flatMap((s) => s.usage?.pids ?? [])) {
    const counters = (await stats.netDev(pid)).filter((i) => i.name !== 'lo');
    if (counters.length > 0) return counters;
  }
  const veth = (sandbox.network?.cniResult as CniResult | undefined)?.interfaces?.find((i) => !i.sandbox && i.name.startsWith('veth'));
  const host = veth ? (await stats.netDev('self')).find((i) => i.name === veth.name) : undefined;
  return host ? [asSeenFromPeer(host, podInterface)] : [];
}

const u64 = (v: bigint): { value: string } => ({ value: String(v) });

export function toCriContainerStats(s: ContainerSample, ctx: CriContext): ContainerStats {
  const r = s.record;
  const ts = String(s.usage?.timestamp ?? s.at);
  return {
    attributes: { id: r.id, metadata: r.metadata, labels: r.labels, annotations: r.annotations },
    ...usageFields(s.usage, ts),
    writableLayer: {
      timestamp: String(s.at),
      // The folder ImageFsInfo reports as the container filesystem.
      fsId: { mountpoint: ctx.dirs.snapshots },
      ...(s.writableLayer ? { usedBytes: u64(s.writableLayer.usedBytes), inodesUsed: u64(s.writableLayer.inodesUsed) } : {}),
    },
  };
}

export function toCriPodStats(p: PodSample, ctx: CriContext): PodSandboxStats {
  const sb = p.sandbox;
  const running = p.containers.flatMap((c) => (c.usage ? [c.usage] : []));
  const ts = String(p.at);
  const sum = (f: (u: ContainerUsage) => bigint): bigint => running.reduce((a, u) => a + f(u), 0n);
  const usageNs = sum((u) => u.cpu.usageNs);
  const iface = (c: InterfaceCounters): NetworkInterfaceUsage => ({
    name: c.name,
    rxBytes: u64(c.rxBytes),
    rxErrors: u64(c.rxErrors),
    txBytes: u64(c.txBytes),
    txErrors: u64(c.txErrors),
  });
  // kubelet (v1.37.2, cri_stats_provider_linux.go addCRIPodNetworkStats) reads default_interface of
  // any network it is given without a nil check, and panics without one: a network always has one
  // (eth0, else the first interface), and a pod whose interfaces cannot be read has no network.
  const def = p.network?.find((c) => c.name === podInterface) ?? p.network?.[0];
  return {
    attributes: { id: sb.id, metadata: sb.metadata, labels: sb.labels, annotations: sb.annotations },
    linux: {
      cpu: {
        timestamp: ts,
        usageCoreNanoSeconds: u64(usageNs),
        ...nanoCores(ctx.containers.stats.rates.of(sb.id, p.at, usageNs)),
      },
      memory: {
        timestamp: ts,
        workingSetBytes: u64(sum((u) => u.memory.workingSetBytes)),
        usageBytes: u64(sum((u) => u.memory.usageBytes)),
        rssBytes: u64(sum((u) => u.memory.rssBytes)),
        pageFaults: u64(sum((u) => u.memory.pageFaults)),
        majorPageFaults: u64(sum((u) => u.memory.majorPageFaults)),
      },
      ...(p.network && def ? { network: { timestamp: ts, defaultInterface: iface(def), interfaces: p.network.map(iface) } } : {}),
      process: { timestamp: ts, processCount: u64(BigInt(running.reduce((a, u) => a + u.processes, 0))) },
      containers: p.containers.map((c) => toCriContainerStats(c, ctx)),
    },
  };
}

/** CPU and memory of a running container; a container that does not run has the timestamps only. */
function usageFields(u: ContainerUsage | undefined, ts: string): Pick<ContainerStats, 'cpu' | 'memory'> {
  if (!u) return { cpu: { timestamp: ts }, memory: { timestamp: ts } };
  const m = u.memory;
  return {
    cpu: { timestamp: ts, usageCoreNanoSeconds: u64(u.cpu.usageNs), ...nanoCores(u.cpu.nanoCores) },
    memory: {
      timestamp: ts,
      workingSetBytes: u64(m.workingSetBytes),
      usageBytes: u64(m.usageBytes),
      rssBytes: u64(m.rssBytes),
      pageFaults: u64(m.pageFaults),
      majorPageFaults: u64(m.majorPageFaults),
      // Only an enforced limit leaves something "available" (containerd: limit − working set).
      ...(m.limitBytes !== undefined ? { availableBytes: u64(m.limitBytes > m.workingSetBytes ? m.limitBytes - m.workingSetBytes : 0n) } : {}),
    },
  };
}

/** The rate needs two samples: absent on the first. */
function nanoCores(v: bigint | undefined): { usageNanoCores?: { value: string } } {
  return v === undefined ? {} : { usageNanoCores: u64(v) };
}
