import { readFile } from 'node:fs/promises';
import { availableParallelism, cpus, release, totalmem } from 'node:os';

import { run } from './proc.js';

// The facts a benchmark result is meaningless without.

export interface MachineFacts {
  cpus: number;
  cpuModel: string;
  memory: string;
  kernel: string;
  os: string;
  filesystem: string;
  node: string;
}

export async function machineFacts(benchDir: string): Promise<MachineFacts> {
  const osRelease = await readFile('/etc/os-release', 'utf8').catch(() => '');
  const mounts = (await readFile('/proc/mounts', 'utf8').catch(() => ''))
    .split('\n')
    .map((l) => l.split(' '))
    .filter((f) => f.length > 3 && (benchDir === f[1] || benchDir.startsWith(f[1] === '/' ? '/' : `${f[1]}/`)))
    .sort((a, b) => b[1]!.length - a[1]!.length)[0];
  return {
    cpus: availableParallelism(),
    cpuModel: cpus()[0]?.model.trim() ?? 'unknown',
    memory: `${(totalmem() / 2 ** 30).toFixed(1)} GiB`,
    kernel: release(),
    os: /^PRETTY_NAME="?([^"\n]*)"?/m.exec(osRelease)?.[1] ?? 'unknown',
    filesystem: mounts ? `${mounts[2]} on ${mounts[1]} (${mounts[0]})` : 'unknown',
    node: process.version,
  };
}

/** The first line a tool prints for `args` (its version), or why there is none. */
export async function toolVersion(file: string, args: readonly string[]): Promise<string> {
  try {
    const r = await run(file, args, { timeoutMs: 10000 });
    const out = (r.stdout.trim() || r.stderr.trim()).split('\n')[0]?.trim();
    return out || `(${file} printed nothing)`;
  } catch (e: unknown) {
    return `(not available: ${(e as Error).message})`;
  }
}
