import { mkdir, rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';

import { internal } from '../errdefs/errors.js';
import { runTool } from './exec_tool.js';

// A pod's network, IPC and UTS namespaces, with no process in them: each is
// bind-mounted onto a file under the agent's runtime folder (not /run/netns,
// which is root's), so it outlives every process and agent restart. One
// `unshare` makes all three and sets the hostname inside the new UTS
// namespace. The bind mounts live in the node's mount namespace.

export interface PodNamespacePaths {
  net: string;
  ipc: string;
  uts: string;
}

export interface PodNamespacesOptions {
  root: string;
  unshare: string;
  umount: string;
  hostname: string;
}

export class PodNamespaces {
  constructor(private readonly o: Omit<PodNamespacesOptions, 'hostname'>) {}

  paths(id: string): PodNamespacePaths {
    const d = join(this.o.root, id);
    return { net: join(d, 'net'), ipc: join(d, 'ipc'), uts: join(d, 'uts') };
  }

  /**
   * Creates the namespaces. `network: false` (hostNetwork) and `ipc: false`
   * (hostIPC) share the node's instead; the paths of what was created come back.
   */
  async create(id: string, hostname: string, own: { network: boolean; ipc: boolean }): Promise<Partial<PodNamespacePaths> & { uts: string }> {
    const p = this.paths(id);
    await mkdir(join(this.o.root, id), { recursive: true, mode: 0o700 });
    const made = { ...(own.network ? { net: p.net } : {}), ...(own.ipc ? { ipc: p.ipc } : {}), uts: p.uts };
    for (const f of Object.values(made)) await writeFile(f, '', { mode: 0o600 });
    const args = [...(made.net ? [`--net=${made.net}`] : []), ...(made.ipc ? [`--ipc=${made.ipc}`] : []), `--uts=${p.uts}`, 'hostname', hostname];
    const r = await runTool(this.o.unshare, args);
    if (r.code !== 0) {
      await this.remove(id);
      throw internal(`creating the pod namespaces with unshare failed: ${r.stderr.trim() || `exit code ${r.code}`}`, { field: 'sandbox' });
    }
    return made;
  }

  /** Unmounts and removes them; idempotent. */
  async remove(id: string): Promise<void> {
    const p = this.paths(id);
    for (const f of [p.net, p.ipc, p.uts]) {
      // Not mounted (or gone) is fine: remove is idempotent.
      await runTool(this.o.umount, [f]).catch(() => undefined);
    }
    await rm(join(this.o.root, id), { recursive: true, force: true });
  }
}
