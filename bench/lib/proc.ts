import { spawn } from 'node:child_process';
import { readdir, readFile, readlink } from 'node:fs/promises';

// Running tools and finding processes, for the benchmarks.

export interface RunResult {
  code: number | null;
  signal: NodeJS.Signals | null;
  stdout: string;
  stderr: string;
  /** Wall time from spawn to exit, in milliseconds. */
  ms: number;
}

export function run(file: string, args: readonly string[], opts: { env?: NodeJS.ProcessEnv; timeoutMs?: number } = {}): Promise<RunResult> {
  return new Promise((resolve, reject) => {
    const started = process.hrtime.bigint();
    const child = spawn(file, args, { env: opts.env ?? process.env, stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (d: Buffer) => (stdout += d.toString()));
    child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
    const timer = setTimeout(() => child.kill('SIGKILL'), opts.timeoutMs ?? 300000);
    child.on('error', (e) => {
      clearTimeout(timer);
      reject(e);
    });
    child.on('close', (code, signal) => {
      clearTimeout(timer);
      resolve({ code, signal, stdout, stderr, ms: Number(process.hrtime.bigint() - started) / 1e6 });
    });
  });
}

/** Runs a tool that must succeed; throws with its output otherwise. */
export async function must(file: string, args: readonly string[], opts: { env?: NodeJS.ProcessEnv; timeoutMs?: number } = {}): Promise<RunResult> {
  const r = await run(file, args, opts);
  if (r.code !== 0) throw new Error(`${file} ${args.join(' ')} failed (${r.code ?? r.signal}):\n${r.stdout}${r.stderr}`);
  return r;
}

export const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

export interface Proc {
  pid: number;
  ppid: number;
  uid: number;
  userNs: string | undefined;
  cmdline: string;
  /** /proc/PID/status Name and State letter (R, S, D, Z, …). */
  name: string;
  state: string;
}

/** Every process of `uid` this process can see, with its user namespace. */
export async function processesOf(uid: number): Promise<Proc[]> {
  const out: Proc[] = [];
  for (const name of await readdir('/proc')) {
    if (!/^\d+$/.test(name)) continue;
    try {
      const status = await readFile(`/proc/${name}/status`, 'utf8');
      const u = Number(/^Uid:\s+(\d+)/m.exec(status)?.[1]);
      if (u !== uid) continue;
      const ppid = Number(/^PPid:\s+(\d+)/m.exec(status)?.[1]);
      const userNs = await readlink(`/proc/${name}/ns/user`).catch(() => undefined);
      const cmdline = (await readFile(`/proc/${name}/cmdline`, 'utf8').catch(() => '')).replace(/\0/g, ' ').trim();
      const comm = /^Name:\s+(.*)$/m.exec(status)?.[1] ?? '?';
      const state = /^State:\s+(\S)/m.exec(status)?.[1] ?? '?';
      out.push({ pid: Number(name), ppid, uid: u, userNs, cmdline, name: comm, state });
    } catch {
      // Gone meanwhile.
    }
  }
  return out;
}

export function isAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}

/** Waits until `pid` exits, up to `timeoutMs`; true if it did. */
export async function waitGone(pid: number, timeoutMs: number): Promise<boolean> {
  const deadline = Date.now() + timeoutMs;
  while (isAlive(pid)) {
    if (Date.now() > deadline) return false;
    await sleep(50);
  }
  return true;
}

/** The value of `name` in the environment of `pid`, if it can be read. */
export async function environValue(pid: number, name: string): Promise<string | undefined> {
  try {
    const env = await readFile(`/proc/${pid}/environ`, 'utf8');
    for (const kv of env.split('\0')) if (kv.startsWith(`${name}=`)) return kv.slice(name.length + 1);
    return undefined;
  } catch {
    return undefined;
  }
}

/** The 1-minute load average. */
export async function loadAverage(): Promise<number> {
  return Number((await readFile('/proc/loadavg', 'utf8')).split(' ')[0]);
}

/** Jiffies (1/100 s on Linux) of CPU time. */
const clockTicks = 100;

/** CPU seconds the whole machine spent busy so far (/proc/stat: all but idle and iowait). */
export async function machineBusySeconds(): Promise<number> {
  const line = (await readFile('/proc/stat', 'utf8')).split('\n')[0]!.trim().split(/\s+/).slice(1).map(Number);
  const [user = 0, nice = 0, system = 0, , , irq = 0, softirq = 0, steal = 0] = line;
  return (user + nice + system + irq + softirq + steal) / clockTicks;
}

/**
 * CPU seconds used so far by this process's work, by command name: every live
 * process of this uid that is "ours" (`isOurs`), plus this process and its reaped
 * children (crictl, sync) as "crictl+bench".
 */
export async function ourCpuSeconds(isOurs: (pid: number) => Promise<boolean>): Promise<Map<string, number>> {
  const out = new Map<string, number>();
  const add = (k: string, ticks: number): void => void out.set(k, (out.get(k) ?? 0) + ticks / clockTicks);
  const fields = async (pid: number | 'self'): Promise<{ comm: string; f: number[] }> => {
    const stat = await readFile(`/proc/${pid}/stat`, 'utf8');
    // The command name is in parentheses (and may hold spaces); fields from the 3rd follow it.
    return { comm: stat.slice(stat.indexOf('(') + 1, stat.lastIndexOf(')')), f: stat.slice(stat.lastIndexOf(')') + 2).split(' ').map(Number) };
  };
  // utime, stime, cutime, cstime are fields 14-17 (indexes 11-14 from the 3rd).
  const self = await fields('self');
  add('crictl+bench', self.f[11]! + self.f[12]! + self.f[13]! + self.f[14]!);
  for (const p of await processesOf(process.getuid!())) {
    if (p.pid === process.pid) continue;
    try {
      if (!(await isOurs(p.pid))) continue;
      const { comm, f } = await fields(p.pid);
      add(comm, f[11]! + f[12]!);
    } catch {
      // Gone meanwhile.
    }
  }
  return out;
}

export const sumOf = (m: Map<string, number>): number => [...m.values()].reduce((a, b) => a + b, 0);
