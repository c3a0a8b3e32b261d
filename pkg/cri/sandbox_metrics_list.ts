import { statfs } from 'node:fs/promises';

import type { ListPodSandboxMetricsResponse, Metric } from '../../proto/types.js';
import type { ContainerUsage } from '../sandbox/stats_collector.js';
import { type ContainerView, containerMetrics, type MetricKind, type MetricValue, networkMetrics } from './cadvisor_metrics.js';
import type { CriContext } from './context.js';
import { type ContainerSample, forgetGone, samplePods } from './stats.js';

// ListPodSandboxMetrics: cadvisor-named metrics of every pod, from the same
// sampling as the stats RPCs (stats.ts): the pod's network, and each running
// container's CPU, memory, processes, open files and writable layer.
export async function listPodSandboxMetrics(_req: unknown, ctx: CriContext): Promise<ListPodSandboxMetricsResponse> {
  const pods = await samplePods(ctx.pods.store.list(), ctx);
  forgetGone(ctx);
  const disk = await snapshotsDisk(ctx.dirs.snapshots);
  return {
    podMetrics: await Promise.all(
      pods.map(async (p) => ({
        podSandboxId: p.sandbox.id,
        // A pod has no image: its image label is empty.
        metrics: p.network ? series(networkMetrics, p.network, [p.sandbox.id, p.sandbox.metadata.name, '', p.sandbox.metadata.namespace, p.sandbox.metadata.name, ''], p.at) : [],
        containerMetrics: await Promise.all(
          p.containers.filter(running).map(async (c) => ({
            containerId: c.record.id,
            metrics: series(containerMetrics, await viewOf(c, disk, ctx), [c.record.id, c.record.metadata.name, c.record.image, p.sandbox.metadata.namespace, p.sandbox.metadata.name, c.record.metadata.name], c.at),
          })),
        ),
      })),
    ),
  };
}

const running = (c: ContainerSample): c is ContainerSample & { usage: ContainerUsage } => c.usage !== undefined;

type Disk = Omit<ContainerView['fs'], 'usedBytes'>;

/** The filesystem under the snapshots folder, where every writable layer is. */
async function snapshotsDisk(dir: string): Promise<Disk> {
  const fs = await statfs(dir, { bigint: true }).catch(() => undefined);
  return { device: dir, capacityBytes: fs ? fs.blocks * fs.bsize : 0n, inodesTotal: fs?.files ?? 0n, inodesFree: fs?.ffree ?? 0n };
}

async function viewOf(c: ContainerSample & { usage: ContainerUsage }, disk: Disk, ctx: CriContext): Promise<ContainerView> {
  const each = await Promise.all(c.usage.pids.map((pid) => ctx.containers.stats.openFiles(pid)));
  return {
    usage: c.usage,
    startedAt: BigInt(c.record.startedAt),
    at: c.at,
    files: { fds: each.reduce((a, f) => a + (f?.fds ?? 0), 0), sockets: each.reduce((a, f) => a + (f?.sockets ?? 0), 0) },
    fs: { ...disk, usedBytes: c.writableLayer?.usedBytes ?? 0n },
  };
}

function series<V>(rows: ReadonlyArray<{ name: string; kind: MetricKind; values?: (v: V) => MetricValue[] }>, input: V, base: string[], at: bigint): Metric[] {
  return rows.flatMap((row) =>
    (row.values?.(input) ?? []).map(([labels, value]) => ({
      name: row.name,
      timestamp: String(at),
      metricType: row.kind,
      labelValues: [...base, ...labels],
      value: { value: String(value) },
    })),
  );
}
