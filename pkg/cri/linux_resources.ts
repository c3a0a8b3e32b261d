import type { LinuxContainerResources__Output } from '../../proto/types.js';
import { invalidArgument } from '../errdefs/errors.js';

// runtime.v1.LinuxContainerResources as UpdateContainerResources and
// UpdatePodSandboxResources take them: checked field by field (a value the
// kernel would refuse or that cannot be meant is INVALID_ARGUMENT naming the
// field), and merged into what the container had the way containerd's
// WithResources does: a zero or empty field leaves the old value.

export type LinuxResources = LinuxContainerResources__Output;

export function emptyLinuxResources(): LinuxResources {
  return {
    cpuPeriod: '0',
    cpuQuota: '0',
    cpuShares: '0',
    memoryLimitInBytes: '0',
    oomScoreAdj: '0',
    cpusetCpus: '',
    cpusetMems: '',
    hugepageLimits: [],
    unified: {},
    memorySwapLimitInBytes: '0',
  };
}

/** Any partial or differently typed form (a record, a config as sent) as the full CRI form. */
export function normalizeLinuxResources(r: unknown): LinuxResources {
  const out = emptyLinuxResources();
  if (typeof r !== 'object' || r === null) return out;
  const x = r as Partial<Record<keyof LinuxResources, unknown>>;
  for (const k of ['cpuPeriod', 'cpuQuota', 'cpuShares', 'memoryLimitInBytes', 'oomScoreAdj', 'memorySwapLimitInBytes'] as const) {
    if (typeof x[k] === 'string' || typeof x[k] === 'number') out[k] = String(x[k]);
  }
  if (typeof x.cpusetCpus === 'string') out.cpusetCpus = x.cpusetCpus;
  if (typeof x.cpusetMems === 'string') out.cpusetMems = x.cpusetMems;
  if (Array.isArray(x.hugepageLimits)) {
    out.hugepageLimits = (x.hugepageLimits as Array<{ pageSize?: unknown; limit?: unknown }>).map((h) => ({ pageSize: String(h.pageSize ?? ''), limit: String(h.limit ?? '0') }));
  }
  if (typeof x.unified === 'object' && x.unified !== null) out.unified = { ...(x.unified as Record<string, string>) };
  return out;
}

/** Far beyond any machine (8 PiB), and the largest integer JSON carries to runc exactly. */
const maxBytes = 2 ** 53;
const cpuList = /^\d+(-\d+)?(,\d+(-\d+)?)*$/;
const pageSize = /^\d+(B|KB|MB|GB|TB|PB)$/i;
// <controller>.<file>, a file of the container's own cgroup folder: no path separators.
const unifiedKey = /^[a-z_]+\.[A-Za-z0-9_.]+$/;

/**
 * Throws INVALID_ARGUMENT naming `${prefix}.<proto field>` for the first bad
 * value. `prefix` is the request field the resources came in ("linux",
 * "resources", "overhead").
 */
export function checkLinuxResources(r: LinuxResources, prefix: string): void {
  const field = (f: string): string => `${prefix}.${f}`;
  const int = (v: string, f: string): number => {
    if (!/^-?\d+$/.test(v)) throw invalidArgument(`"${v}" is not an integer`, { field: field(f) });
    return Number(v);
  };
  const bad = (f: string, v: string, why: string): never => {
    throw invalidArgument(`${f} ${v} ${why}`, { field: field(f) });
  };

  const period = int(r.cpuPeriod, 'cpu_period');
  if (period !== 0 && (period < 1000 || period > 1_000_000)) bad('cpu_period', r.cpuPeriod, 'is out of range: 0 (unset) or 1000-1000000 microseconds');
  const quota = int(r.cpuQuota, 'cpu_quota');
  if (quota !== 0 && quota !== -1 && (quota < 1000 || quota > maxBytes)) bad('cpu_quota', r.cpuQuota, 'is out of range: 0 (unset), -1 (no limit) or at least 1000 microseconds');
  const shares = int(r.cpuShares, 'cpu_shares');
  if (shares !== 0 && (shares < 2 || shares > 262144)) bad('cpu_shares', r.cpuShares, 'is out of range: 0 (unset) or 2-262144');
  const memory = int(r.memoryLimitInBytes, 'memory_limit_in_bytes');
  if (memory < 0) bad('memory_limit_in_bytes', r.memoryLimitInBytes, 'is negative');
  if (memory > maxBytes) bad('memory_limit_in_bytes', r.memoryLimitInBytes, `is more than ${maxBytes} bytes`);
  if (memory !== 0 && memory < 4096) bad('memory_limit_in_bytes', r.memoryLimitInBytes, 'is less than one page (4096 bytes)');
  const swap = int(r.memorySwapLimitInBytes, 'memory_swap_limit_in_bytes');
  if (swap < -1) bad('memory_swap_limit_in_bytes', r.memorySwapLimitInBytes, 'is negative (only -1, no limit, is allowed)');
  if (swap > maxBytes) bad('memory_swap_limit_in_bytes', r.memorySwapLimitInBytes, `is more than ${maxBytes} bytes`);
  // As runc and docker: the limit is memory + swap, so it cannot be below the memory limit.
  if (swap > 0 && memory > 0 && swap < memory) bad('memory_swap_limit_in_bytes', r.memorySwapLimitInBytes, `is less than memory_limit_in_bytes ${r.memoryLimitInBytes} (it counts memory and swap together)`);
  const oom = int(r.oomScoreAdj, 'oom_score_adj');
  if (oom < -1000 || oom > 1000) bad('oom_score_adj', r.oomScoreAdj, 'is out of range -1000-1000');
  if (r.cpusetCpus !== '' && !cpuList.test(r.cpusetCpus)) bad('cpuset_cpus', `"${r.cpusetCpus}"`, 'is not a CPU list like "0-3,6"');
  if (r.cpusetMems !== '' && !cpuList.test(r.cpusetMems)) bad('cpuset_mems', `"${r.cpusetMems}"`, 'is not a memory node list like "0-1"');
  for (const [i, h] of r.hugepageLimits.entries()) {
    if (!pageSize.test(h.pageSize)) bad(`hugepage_limits[${i}].page_size`, `"${h.pageSize}"`, 'is not a page size like "2MB"');
    if (!/^\d+$/.test(h.limit)) bad(`hugepage_limits[${i}].limit`, h.limit, 'is not a byte count');
  }
  for (const [k, v] of Object.entries(r.unified)) {
    if (!unifiedKey.test(k)) throw invalidArgument(`"${k}" is not a cgroup v2 file name like "memory.high"`, { field: field(`unified["${k}"]`) });
    if (/[\n\0]/.test(v)) throw invalidArgument(`the value of ${k} has a newline or NUL`, { field: field(`unified["${k}"]`) });
  }
}

/** `update` over `base`: its non-zero, non-empty fields replace; unified keys are merged. */
export function mergeLinuxResources(base: LinuxResources, update: LinuxResources): LinuxResources {
  const num = (k: 'cpuPeriod' | 'cpuQuota' | 'cpuShares' | 'memoryLimitInBytes' | 'oomScoreAdj' | 'memorySwapLimitInBytes'): string => (update[k] !== '0' ? update[k] : base[k]);
  return {
    cpuPeriod: num('cpuPeriod'),
    cpuQuota: num('cpuQuota'),
    cpuShares: num('cpuShares'),
    memoryLimitInBytes: num('memoryLimitInBytes'),
    oomScoreAdj: num('oomScoreAdj'),
    memorySwapLimitInBytes: num('memorySwapLimitInBytes'),
    cpusetCpus: update.cpusetCpus || base.cpusetCpus,
    cpusetMems: update.cpusetMems || base.cpusetMems,
    hugepageLimits: update.hugepageLimits.length > 0 ? update.hugepageLimits : base.hugepageLimits,
    unified: { ...base.unified, ...update.unified },
  };
}
