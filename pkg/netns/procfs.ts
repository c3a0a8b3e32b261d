import { readFileSync } from 'node:fs';
import { readFile, readlink, readdir } from 'node:fs/promises';

// What the kernel says about processes, read from /proc. Used to recognise the
// node namespace's processes (by namespace identity, not by name) and to stop
// them.

export function isAlive(pid: number): boolean {
  if (!Number.isInteger(pid) || pid <= 0) return false;
  try {
    process.kill(pid, 0);
  } catch (e: unknown) {
    // EPERM: it exists but is not ours, which counts as alive.
    return (e as NodeJS.ErrnoException).code === 'EPERM';
  }
  // A zombie has exited; only its parent has not reaped it yet.
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    return stat.slice(stat.lastIndexOf(')') + 2, stat.lastIndexOf(')') + 3) !== 'Z';
  } catch {
    return false;
  }
}

export async function namespaceOf(pid: number | 'self', kind: 'user' | 'net' | 'mnt'): Promise<string | undefined> {
  try {
    return await readlink(`/proc/${pid}/ns/${kind}`);
  } catch {
    return undefined;
  }
}

/** Start time in clock ticks since boot (field 22 of /proc/PID/stat); tells a reused pid apart. */
export async function startTimeOf(pid: number): Promise<number | undefined> {
  try {
    const stat = await readFile(`/proc/${pid}/stat`, 'utf8');
    // comm (field 2) may hold spaces and parentheses: split after the last ')'.
    const rest = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    const v = Number(rest[19]);
    return Number.isFinite(v) ? v : undefined;
  } catch {
    return undefined;
  }
}

export interface ProcessInfo {
  pid: number;
  ppid: number;
  uid: number;
  comm: string;
  userNs: string | undefined;
}

/** Every live (not zombie) process visible in /proc whose real uid is `uid`. */
export async function processesOf(uid: number): Promise<ProcessInfo[]> {
  const out: ProcessInfo[] = [];
  for (const name of await readdir('/proc')) {
    if (!/^\d+$/.test(name)) continue;
    const pid = Number(name);
    try {
      const status = await readFile(`/proc/${pid}/status`, 'utf8');
      const u = /^Uid:\s+(\d+)/m.exec(status);
      const p = /^PPid:\s+(\d+)/m.exec(status);
      const c = /^Name:\s+(.*)$/m.exec(status);
      if (!u || Number(u[1]) !== uid) continue;
      // Exited, waiting for its parent to reap it.
      if (/^State:\s+Z/m.test(status)) continue;
      out.push({ pid, ppid: Number(p?.[1] ?? 0), uid, comm: c?.[1] ?? '', userNs: await namespaceOf(pid, 'user') });
    } catch {
      // Exited while we looked.
    }
  }
  return out;
}

/** `roots` and all their descendants among `procs`. */
export function descendants(procs: readonly ProcessInfo[], roots: ReadonlySet<number>): Set<number> {
  const found = new Set(roots);
  let grew = true;
  while (grew) {
    grew = false;
    for (const p of procs) {
      if (!found.has(p.pid) && found.has(p.ppid)) {
        found.add(p.pid);
        grew = true;
      }
    }
  }
  return found;
}

export const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

/** SIGTERM, then SIGKILL after `graceMs`; resolves with the pids still alive at the end. */
export async function terminate(pids: readonly number[], graceMs: number): Promise<number[]> {
  const signal = (sig: NodeJS.Signals, pid: number): void => {
    try {
      process.kill(pid, sig);
    } catch {
      // Gone already.
    }
  };
  pids.forEach((p) => signal('SIGTERM', p));
  const deadline = Date.now() + graceMs;
  while (Date.now() < deadline && pids.some(isAlive)) await sleep(50);
  pids.filter(isAlive).forEach((p) => signal('SIGKILL', p));
  const killDeadline = Date.now() + 2000;
  while (Date.now() < killDeadline && pids.some(isAlive)) await sleep(25);
  return pids.filter(isAlive);
}
