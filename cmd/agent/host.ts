import { spawnSync } from 'node:child_process';
import { accessSync, constants } from 'node:fs';
import { readFile, stat } from 'node:fs/promises';

import type { HostProbe } from '../../pkg/node/preflight.js';
import { findTool } from './config.js';

/** The real host, for `usernode check` and the preflight of `usernode run`. */
export function realHost(uid: number, username: string, pathEnv: string | undefined): HostProbe {
  return {
    uid,
    username,
    nodeVersion: process.version,
    readFile: async (p) => readFile(p, 'utf8').catch(() => undefined),
    stat: async (p) => {
      try {
        const s = await stat(p);
        return { mode: s.mode, uid: s.uid, isCharacterDevice: s.isCharacterDevice(), isDirectory: s.isDirectory() };
      } catch {
        return undefined;
      }
    },
    canReadWrite: async (p) => can(p, constants.R_OK | constants.W_OK),
    isExecutable: async (p) => can(p, constants.X_OK),
    fileCapabilities: async (p) => {
      const getcap = findTool('getcap', pathEnv);
      if (!getcap) return 'unknown';
      const r = spawnSync(getcap, [p], { encoding: 'utf8', timeout: 5000 });
      if (r.status !== 0) return 'unknown';
      // "PATH cap_setuid=ep" (or "PATH = cap_setuid+ep" from older libcap); nothing when none.
      const caps = r.stdout.trim().slice(p.length).replace(/^\s*=?\s*/, '');
      return caps === '' ? undefined : caps;
    },
    userNamespaceError: async () => {
      const unshare = findTool('unshare', pathEnv);
      if (!unshare) return 'unshare (util-linux) not found';
      const r = spawnSync(unshare, ['--user', '--map-root-user', 'true'], { encoding: 'utf8', timeout: 5000 });
      if (r.status === 0) return undefined;
      return (r.stderr || r.error?.message || `exit code ${r.status}`).trim();
    },
  };
}

function can(p: string, mode: number): boolean {
  try {
    accessSync(p, mode);
    return true;
  } catch {
    return false;
  }
}
