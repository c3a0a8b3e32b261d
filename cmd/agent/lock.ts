import { readFileSync } from 'node:fs';
import { open, readFile, rm } from 'node:fs/promises';

import { alreadyExists } from '../../pkg/errdefs/errors.js';
import { isAlive } from '../../pkg/netns/procfs.js';

// One agent per user and runtime folder: a pid file created exclusively. A
// pid file whose process is gone, or is no longer a usernode agent, is stale
// and replaced.

export function agentPidAlive(pid: number): boolean {
  if (!isAlive(pid)) return false;
  try {
    return readFileSync(`/proc/${pid}/cmdline`, 'utf8').includes('usernode');
  } catch {
    return false;
  }
}

export async function readPid(path: string): Promise<number | undefined> {
  try {
    const n = Number((await readFile(path, 'utf8')).trim());
    return Number.isInteger(n) && n > 0 ? n : undefined;
  } catch {
    return undefined;
  }
}

export async function acquirePidLock(path: string, username: string): Promise<() => Promise<void>> {
  for (let attempt = 0; attempt < 2; attempt++) {
    try {
      const f = await open(path, 'wx', 0o600);
      await f.writeFile(`${process.pid}\n`);
      await f.close();
      return async () => {
        if ((await readPid(path)) === process.pid) await rm(path, { force: true });
      };
    } catch (e: unknown) {
      if ((e as NodeJS.ErrnoException).code !== 'EEXIST') throw e;
      const pid = await readPid(path);
      if (pid !== undefined && pid !== process.pid && agentPidAlive(pid)) {
        throw alreadyExists(`usernode is already running for ${username} (pid ${pid}); stop it first with "usernode stop"`, { field: path });
      }
      await rm(path, { force: true });
    }
  }
  throw alreadyExists(`could not take the agent lock ${path}`, { field: path });
}
