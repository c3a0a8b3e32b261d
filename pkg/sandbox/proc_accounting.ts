import { readFile, readdir, readlink, stat } from 'node:fs/promises';

// A container's resource use read from its processes' own /proc files, for
// hosts without a delegated cgroup v2 subtree (DESIGN.md: hybrid cgroups
// here, nothing to read per container). A container's processes are those
// whose root directory is its rootfs: runc bind-mounts the rootfs onto itself
// and pivots into it, so /proc/PID/root has the rootfs's device and inode.
// That finds processes started by exec (children of runc, not of the
// container's init) and is never fooled by a reused pid.

/** USER_HZ, the unit of the times in /proc/PID/stat: 100 on every architecture Linux exports to user space. */
const nsPerTick = 10_000_000n;

/** `dev:ino` of a directory: what a process's /proc/PID/root is compared with. */
export type RootKey = string;

export interface ProcessUsage {
  pid: number;
  ppid: number;
  /** Clock ticks since boot (field 22 of stat); with the pid, names one process for good. */
  startTime: number;
  /** User + system time of the process and of the children it has reaped, ns. */
  cpuNs: bigint;
  userNs: bigint;
  systemNs: bigint;
  /** Minor + major faults, the process's and its reaped children's. */
  pageFaults: bigint;
  majorPageFaults: bigint;
  /** Proportional set size (shared pages split among the processes mapping them); RSS without smaps_rollup. */
  memoryBytes: bigint;
  rssAnonBytes: bigint;
  rssFileBytes: bigint;
  rssShmemBytes: bigint;
  threads: number;
}

export async function rootKeyOf(path: string): Promise<RootKey | undefined> {
  try {
    const st = await stat(path, { bigint: true });
    return `${st.dev}:${st.ino}`;
  } catch {
    return undefined;
  }
}

/**
 * The live processes whose root is one of `roots`, by root. Processes that
 * exit while we look, or that are not ours to read, are left out.
 */
export async function processesByRoot(roots: ReadonlySet<RootKey>, procRoot = '/proc'): Promise<Map<RootKey, ProcessUsage[]>> {
  const out = new Map<RootKey, ProcessUsage[]>();
  if (roots.size === 0) return out;
  const names = (await readdir(procRoot)).filter((n) => /^\d+$/.test(n));
  await Promise.all(
    names.map(async (name) => {
      const key = await rootKeyOf(`${procRoot}/${name}/root`);
      if (!key || !roots.has(key)) return;
      const usage = await processUsage(`${procRoot}/${name}`, Number(name));
      if (!usage) return;
      const list = out.get(key) ?? [];
      list.push(usage);
      out.set(key, list);
    }),
  );
  return out;
}

async function processUsage(dir: string, pid: number): Promise<ProcessUsage | undefined> {
  let statText: string;
  let status: string;
  try {
    [statText, status] = await Promise.all([readFile(`${dir}/stat`, 'utf8'), readFile(`${dir}/status`, 'utf8')]);
  } catch {
    return undefined;
  }
  // comm (field 2) may hold spaces and parentheses: fields count from after the last ')'; rest[0] is field 3.
  const rest = statText.slice(statText.lastIndexOf(')') + 2).trim().split(/\s+/);
  const field = (n: number): bigint => {
    const v = rest[n - 3];
    return v !== undefined && /^\d+$/.test(v) ? BigInt(v) : 0n;
  };
  const kb = (name: string): bigint => {
    const m = new RegExp(`^${name}:\\s+(\\d+) kB`, 'm').exec(status);
    return m ? BigInt(m[1]!) * 1024n : 0n;
  };
  const userNs = (field(14) + field(16)) * nsPerTick;
  const systemNs = (field(15) + field(17)) * nsPerTick;
  let memoryBytes = kb('VmRSS');
  try {
    const m = /^Pss:\s+(\d+) kB/m.exec(await readFile(`${dir}/smaps_rollup`, 'utf8'));
    if (m) memoryBytes = BigInt(m[1]!) * 1024n;
  } catch {
    // Kernels before 4.14, or a process that just exited: RSS it is.
  }
  return {
    pid,
    ppid: Number(field(4)),
    startTime: Number(field(22)),
    cpuNs: userNs + systemNs,
    userNs,
    systemNs,
    pageFaults: field(10) + field(11) + field(12) + field(13),
    majorPageFaults: field(12) + field(13),
    memoryBytes,
    rssAnonBytes: kb('RssAnon'),
    rssFileBytes: kb('RssFile'),
    rssShmemBytes: kb('RssShmem'),
    threads: Number(/^Threads:\s+(\d+)/m.exec(status)?.[1] ?? 1),
  };
}

/** Open file descriptors of a process, and how many of them are sockets; undefined when it is gone. */
export async function openFiles(pid: number, procRoot = '/proc'): Promise<{ fds: number; sockets: number } | undefined> {
  let names: string[];
  try {
    names = await readdir(`${procRoot}/${pid}/fd`);
  } catch {
    return undefined;
  }
  const targets = await Promise.all(names.map((n) => readlink(`${procRoot}/${pid}/fd/${n}`).catch(() => '')));
  return { fds: names.length, sockets: targets.filter((t) => t.startsWith('socket:')).length };
}
