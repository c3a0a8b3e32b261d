import { readdir, readFile, statfs } from 'node:fs/promises';
import { availableParallelism, hostname, networkInterfaces, release, totalmem } from 'node:os';

import type { HostFacts } from './node_object.js';

// The host's facts for the Node object, read as an ordinary user can: the
// os module, /proc and the data folder's file system.

const read = (p: string): Promise<string> => readFile(p, 'utf8').catch(() => '');

export async function gatherHostFacts(dataDir: string): Promise<HostFacts> {
  const meminfo = await read('/proc/meminfo');
  const available = Number(/^MemAvailable:\s+(\d+) kB$/m.exec(meminfo)?.[1] ?? 0) * 1024;
  const fs = await statfs(dataDir).catch(() => undefined);
  const osRelease = await read('/etc/os-release');
  const ips = Object.values(networkInterfaces())
    .flat()
    .filter((a): a is NonNullable<typeof a> => a !== undefined && !a.internal && a.family === 'IPv4')
    .map((a) => a.address);
  const pids = (await readdir('/proc').catch(() => [] as string[])).filter((d) => /^\d+$/.test(d)).length;
  return {
    hostname: hostname(),
    internalIPs: ips,
    cpus: availableParallelism(),
    memoryBytes: totalmem(),
    memoryAvailableBytes: available,
    ephemeralStorageBytes: fs ? fs.blocks * fs.bsize : 0,
    ephemeralStorageFreeBytes: fs ? fs.bavail * fs.bsize : 0,
    pidMax: Number((await read('/proc/sys/kernel/pid_max')).trim()) || 0,
    pidsInUse: pids,
    kernelVersion: release(),
    osImage: /^PRETTY_NAME="?([^"\n]*)"?$/m.exec(osRelease)?.[1] ?? 'Linux',
    arch: process.arch,
    os: process.platform,
    machineID: (await read('/etc/machine-id')).trim(),
    bootID: (await read('/proc/sys/kernel/random/boot_id')).trim(),
  };
}
