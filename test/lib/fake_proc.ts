import { mkdir, rm, symlink, writeFile } from 'node:fs/promises';
import { join } from 'node:path';

// A stand-in for /proc: the files the stats collector reads for each process
// (stat, status, smaps_rollup, the root link, net/dev), as the kernel writes them.

export interface FakeProcess {
  pid: number;
  ppid: number;
  /** The process's root directory: a container's rootfs. */
  root: string;
  /** Clock ticks (1/100 s). */
  utime?: number;
  stime?: number;
  cutime?: number;
  cstime?: number;
  minflt?: number;
  majflt?: number;
  startTime?: number;
  pssKb?: number;
  anonKb?: number;
  threads?: number;
  comm?: string;
  /** The net/dev text of the process's network namespace. */
  netDev?: string;
  /** What its open file descriptors point at (fd/N links), e.g. 'socket:[123]', '/dev/null'. */
  fds?: string[];
}

/** Writes the files of `procs` as /proc has them (stat, status, smaps_rollup, root, fd, net/dev), replacing what was there. */
export async function fakeProc(dir: string, procs: readonly FakeProcess[]): Promise<void> {
  await rm(dir, { recursive: true, force: true });
  await mkdir(dir, { recursive: true });
  for (const p of procs) {
    const d = join(dir, String(p.pid));
    await mkdir(d);
    await symlink(p.root, join(d, 'root'));
    // Fields 3..22; the comm may hold spaces and parentheses.
    const f = ['S', p.ppid, p.pid, p.pid, 0, -1, 0, p.minflt ?? 0, 0, p.majflt ?? 0, 0, p.utime ?? 0, p.stime ?? 0, p.cutime ?? 0, p.cstime ?? 0, 20, 0, p.threads ?? 1, 0, p.startTime ?? 1000];
    await writeFile(join(d, 'stat'), `${p.pid} (${p.comm ?? 'sh'}) ${f.join(' ')} 0 0\n`);
    const anon = p.anonKb ?? 100;
    await writeFile(join(d, 'status'), `Name:\tsh\nPPid:\t${p.ppid}\nVmRSS:\t    ${anon + 50} kB\nRssAnon:\t    ${anon} kB\nRssFile:\t      50 kB\nRssShmem:\t       0 kB\nThreads:\t${p.threads ?? 1}\n`);
    if (p.fds !== undefined) {
      await mkdir(join(d, 'fd'));
      for (const [i, target] of p.fds.entries()) await symlink(target, join(d, 'fd', String(i)));
    }
    if (p.netDev !== undefined) {
      await mkdir(join(d, 'net'));
      await writeFile(join(d, 'net', 'dev'), p.netDev);
    }
    if (p.pssKb !== undefined) await writeFile(join(d, 'smaps_rollup'), `00400000-7fff [rollup]\nRss:    ${anon + 50} kB\nPss:    ${p.pssKb} kB\n`);
  }
}

/** A net/dev file with these interfaces: [name, rx bytes, rx packets, rx errs, rx drop, tx bytes, tx packets, tx errs, tx drop]. */
export function netDevText(rows: ReadonlyArray<readonly [string, number, number, number, number, number, number, number, number]>): string {
  const head =
    'Inter-|   Receive                                                |  Transmit\n' +
    ' face |bytes    packets errs drop fifo frame compressed multicast|bytes    packets errs drop fifo colls carrier compressed\n';
  return head + rows.map(([n, rb, rp, re, rd, tb, tp, te, td]) => `${n.padStart(6)}: ${[rb, rp, re, rd, 0, 0, 0, 0, tb, tp, te, td, 0, 0, 0, 0].join(' ')}\n`).join('');
}
