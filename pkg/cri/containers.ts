import { readFile, stat } from 'node:fs/promises';
import { join } from 'node:path';

import type { ContainerRootfs } from '../image/container_rootfs.js';
import type { ContainerRecord, ContainerStore } from '../sandbox/container_store.js';
import type { MountSources } from '../sandbox/mount_sources.js';
import type { ContainerMonitor, OciRuntime } from '../sandbox/oci_runtime.js';
import type { StatsCollector } from '../sandbox/stats_collector.js';

/** What the container RPCs work with (CriContext.containers). */
export interface ContainerRuntime {
  store: ContainerStore;
  rootfs: ContainerRootfs;
  /** Bind mount sources pinned by descriptor, per container. */
  mountSources: MountSources;
  runtime: OciRuntime;
  monitor: ContainerMonitor;
  bundlesDir: string;
  exitDir: string;
  socketDir: string;
  cgroups: { canEnforceLimits: boolean; path?: string };
  /** Where cgroup v2 is mounted (default /sys/fs/cgroup; tests use a folder). */
  cgroupRoot?: string;
  /** The RuntimeDefault seccomp profile for a container of these bounding capabilities (none: RuntimeDefault runs unconfined, noted). */
  seccompDefault: ((capabilities: readonly string[]) => object) | undefined;
  /** runc and its state root, for exec. */
  runc: string;
  runcRoot: string;
  /** CPU, memory and process numbers of running containers (stats and metrics RPCs). */
  stats: StatsCollector;
}

/** The CRI's container filters (ListContainers, ListContainerStats): ids by prefix, as crictl sends them; every label must match. */
export function matchesContainerFilter(r: ContainerRecord, f: { id?: string; podSandboxId?: string; labelSelector?: Record<string, string> } | null | undefined): boolean {
  return (!f?.id || r.id.startsWith(f.id)) && (!f?.podSandboxId || r.sandboxId.startsWith(f.podSandboxId)) && Object.entries(f?.labelSelector ?? {}).every(([k, v]) => r.labels[k] === v);
}

export const nowNs = (): string => String(BigInt(Date.now()) * 1000000n);

/**
 * The record brought up to date with what conmon knows: a container whose
 * exit file exists has exited, with that code, at the file's time.
 */
export async function refresh(r: ContainerRecord, c: ContainerRuntime): Promise<ContainerRecord> {
  if (r.state === 'CONTAINER_EXITED') return r;
  if (r.state === 'CONTAINER_CREATED' && r.startedAt === '0') return r;
  const file = join(c.exitDir, r.id);
  let text: string;
  let when: Date;
  try {
    text = (await readFile(file, 'utf8')).trim();
    when = (await stat(file)).mtime;
  } catch {
    return r;
  }
  // An empty file is one still being written: Number('') would be a false exit code 0.
  if (text === '') return r;
  const code = Number(text);
  const message = await terminationMessage(r);
  const oomKilled = code !== 0 && (await oomKillsOf(r.bundle, c.cgroupRoot)) > 0;
  // Applied to the record as it is by then (a resources update may have come in meanwhile).
  const exited = await c.store.modify(r.id, (cur) =>
    cur.state === 'CONTAINER_EXITED'
      ? cur
      : {
          ...cur,
          state: 'CONTAINER_EXITED',
          exitCode: Number.isFinite(code) ? code : -1,
          finishedAt: String(BigInt(when.getTime()) * 1000000n),
          reason: code === 0 ? 'Completed' : oomKilled ? 'OOMKilled' : 'Error',
          message,
        },
  );
  return exited ?? r;
}

/**
 * How many times the kernel's OOM killer struck in the container's own cgroup
 * (memory.events oom_kill), which runc keeps until the container is deleted.
 * A container without a cgroup of its own (no delegated cgroup v2) cannot be
 * told apart from one that was killed otherwise: 0.
 */
export async function oomKillsOf(bundle: string, cgroupRoot = '/sys/fs/cgroup'): Promise<number> {
  try {
    const spec = JSON.parse(await readFile(join(bundle, 'config.json'), 'utf8')) as { linux?: { cgroupsPath?: string } };
    const path = spec.linux?.cgroupsPath;
    if (!path) return 0;
    const events = await readFile(join(cgroupRoot, path, 'memory.events'), 'utf8');
    return Number(/^oom_kill (\d+)$/m.exec(events)?.[1] ?? 0);
  } catch {
    return 0;
  }
}

async function terminationMessage(r: ContainerRecord): Promise<string> {
  if (!r.terminationMessagePath) return '';
  try {
    return (await readFile(r.terminationMessagePath, 'utf8')).slice(0, 4096);
  } catch {
    return '';
  }
}
