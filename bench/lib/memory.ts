import { readFile } from 'node:fs/promises';

import type { CriRuntime } from './runtime.js';

// The memory a runtime costs: every process of it (lib/runtime.ts processes()),
// by role. "agent" is what the issue counts: the runtime itself (usernode's two
// node processes; containerd) and its per-container monitors (conmon;
// containerd-shim-runc-v2). The node namespace (rootlesskit, slirp4netns, the
// holder) and the pods' own processes (containerd's pause, the `sleep`s) are
// reported beside it. RSS counts shared pages in every process; PSS shares them out.

export type Role = 'runtime' | 'monitor' | 'namespace' | 'pod';

export interface ProcessMemory {
  pid: number;
  comm: string;
  role: Role;
  rssKiB: number;
  /** Proportional set size (smaps_rollup), when readable. */
  pssKiB: number | undefined;
}

const isMonitor = (comm: string): boolean => comm === 'conmon' || comm.startsWith('containerd-shim');
// rootlesskit's child re-executes itself (/proc/self/exe): its command name is "exe".
const namespaceComms = new Set(['rootlesskit', 'exe', 'slirp4netns']);

async function kib(pid: number, file: 'status' | 'smaps_rollup', key: string): Promise<number | undefined> {
  const text = await readFile(`/proc/${pid}/${file}`, 'utf8').catch(() => '');
  const m = new RegExp(`^${key}:\\s+(\\d+) kB`, 'm').exec(text);
  return m ? Number(m[1]) : undefined;
}

export async function memoryOf(rt: CriRuntime): Promise<ProcessMemory[]> {
  const procs = await rt.processes();
  const { pid: nsPid } = await rt.nodeNamespace();
  const byPid = new Map(procs.map((p) => [p.pid, p]));
  const comms = new Map(procs.map((p) => [p.pid, p.name]));
  // usernode's holder (what nsenter -t targets) is not the runtime; containerd's node-namespace process is containerd.
  const holder = comms.get(nsPid) === 'containerd' ? undefined : nsPid;
  const roleOf = (pid: number): Role => {
    const comm = comms.get(pid) ?? '?';
    if (isMonitor(comm)) return 'monitor';
    if (namespaceComms.has(comm) || pid === holder) return 'namespace';
    // usernode's holder may be a `sleep` that rootlesskit's child runs.
    const parent = byPid.get(pid)?.ppid;
    if (comm === 'sleep' && parent !== undefined && comms.get(parent) === 'exe') return 'namespace';
    for (let up = byPid.get(pid)?.ppid; up !== undefined && byPid.has(up); up = byPid.get(up)?.ppid) {
      if (isMonitor(comms.get(up) ?? '')) return 'pod';
    }
    return 'runtime';
  };
  const out: ProcessMemory[] = [];
  for (const p of procs) {
    const rssKiB = await kib(p.pid, 'status', 'VmRSS');
    if (rssKiB === undefined) continue; // gone, or a zombie
    out.push({ pid: p.pid, comm: comms.get(p.pid) ?? '?', role: roleOf(p.pid), rssKiB, pssKiB: await kib(p.pid, 'smaps_rollup', 'Pss') });
  }
  return out;
}

export interface MemorySummary {
  /** MiB by role, RSS and PSS; and the agent (runtime + monitors). */
  rss: Record<Role | 'agent', number>;
  pss: Record<Role | 'agent', number>;
  /** Process count by role. */
  count: Record<Role, number>;
  /** "comm ×n RSS MiB" by command name, largest first. */
  byComm: string[];
}

export function summarizeMemory(list: readonly ProcessMemory[]): MemorySummary {
  const zero = (): Record<Role | 'agent', number> => ({ runtime: 0, monitor: 0, namespace: 0, pod: 0, agent: 0 });
  const rss = zero();
  const pss = zero();
  const count: Record<Role, number> = { runtime: 0, monitor: 0, namespace: 0, pod: 0 };
  const comm = new Map<string, { n: number; kib: number }>();
  for (const p of list) {
    rss[p.role] += p.rssKiB / 1024;
    pss[p.role] += (p.pssKiB ?? p.rssKiB) / 1024;
    count[p.role]++;
    const k = `${p.comm} (${p.role})`;
    const c = comm.get(k) ?? { n: 0, kib: 0 };
    comm.set(k, { n: c.n + 1, kib: c.kib + p.rssKiB });
  }
  rss.agent = rss.runtime + rss.monitor;
  pss.agent = pss.runtime + pss.monitor;
  const byComm = [...comm.entries()].sort((a, b) => b[1].kib - a[1].kib).map(([k, v]) => `${k} ×${v.n} ${(v.kib / 1024).toFixed(1)} MiB`);
  return { rss, pss, count, byComm };
}
