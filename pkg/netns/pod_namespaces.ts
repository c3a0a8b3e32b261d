import { spawn } from 'node:child_process';
import { mkdir, readFile, rm, writeFile } from 'node:fs/promises';
import { setTimeout as sleep } from 'node:timers/promises';
import { join } from 'node:path';

import { internal } from '../errdefs/errors.js';
import { runTool } from './exec_tool.js';
import { startTimeOf } from './procfs.js';

// A pod's network, IPC and UTS namespaces, with no process in them: each is
// bind-mounted onto a file under the agent's runtime folder (not /run/netns,
// which is root's), so it outlives every process and agent restart. One
// `unshare` makes all three and sets the hostname inside the new UTS
// namespace. The bind mounts live in the node's mount namespace.
//
// A pod with a user namespace of its own (hostUsers: false) has its network,
// IPC and UTS namespaces made inside that user namespace: only then may its
// containers mount sysfs and mqueue there. unshare cannot bind-mount a
// namespace it made inside a new user namespace (the mount namespace is not
// its user namespace's), so a short-lived holder makes all four, the agent
// writes the holder's id maps and binds /proc/<holder>/ns/* from outside.

export interface PodNamespacePaths {
  net: string;
  ipc: string;
  uts: string;
  user: string;
}

/** A pod's process namespace: its PID 1 (catatonit), as the node sees it. */
export interface PidNamespaceHolder {
  pid: number;
  /** Field 22 of /proc/<pid>/stat: tells the holder from a later process that got its pid. */
  startTime: number;
}

/** The environment variable naming the pod a process namespace holder (catatonit, its unshare) belongs to. */
export const pidNamespaceOwnerEnv = 'USERNODE_POD_SANDBOX_ID';

export interface IdMap {
  containerId: number;
  hostId: number;
  length: number;
}

export interface PodNamespacesOptions {
  root: string;
  unshare: string;
  nsenter: string;
  catatonit: string;
  mount: string;
  umount: string;
  hostname: string;
}

export class PodNamespaces {
  constructor(private readonly o: Omit<PodNamespacesOptions, 'hostname'>) {}

  paths(id: string): PodNamespacePaths {
    const d = join(this.o.root, id);
    return { net: join(d, 'net'), ipc: join(d, 'ipc'), uts: join(d, 'uts'), user: join(d, 'user') };
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

  /** A user namespace with these maps, and network, IPC and UTS namespaces owned by it; all four bind-mounted. */
  async createInUserNamespace(id: string, hostname: string, maps: { uids: IdMap[]; gids: IdMap[] }): Promise<PodNamespacePaths> {
    const p = this.paths(id);
    await mkdir(join(this.o.root, id), { recursive: true, mode: 0o700 });
    const holder = spawn(this.o.unshare, ['--user', '--net', '--ipc', '--uts', '--', '/bin/sh', '-c', 'echo ready; read _'], {
      stdio: ['pipe', 'pipe', 'pipe'],
    });
    let stderr = '';
    holder.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
    // A holder that died already makes the final write an EPIPE: unheard, that 'error' would end the runtime half.
    holder.stdin.on('error', () => undefined);
    const exited = new Promise<void>((resolve) => holder.on('close', () => resolve()));
    try {
      await new Promise<void>((resolve, reject) => {
        let out = '';
        holder.stdout.on('data', (d: Buffer) => {
          out += d.toString();
          if (out.includes('ready\n')) resolve();
        });
        holder.on('error', reject);
        holder.on('close', (code) => reject(new Error(stderr.trim() || `exit code ${code}`)));
      });
      const pid = holder.pid!;
      const line = (m: IdMap[]): string => m.map((x) => `${x.containerId} ${x.hostId} ${x.length}`).join('\n') + '\n';
      await writeFile(`/proc/${pid}/uid_map`, line(maps.uids));
      await writeFile(`/proc/${pid}/gid_map`, line(maps.gids));
      // The holder lost its capabilities when it ran sh unmapped; nsenter comes in as the pod's root.
      const named = await runTool(this.o.nsenter, [`--user=/proc/${pid}/ns/user`, `--uts=/proc/${pid}/ns/uts`, 'hostname', hostname]);
      if (named.code !== 0) throw new Error(`setting the host name: ${named.stderr.trim()}`);
      for (const kind of ['user', 'net', 'ipc', 'uts'] as const) {
        await writeFile(p[kind], '', { mode: 0o600 });
        const r = await runTool(this.o.mount, ['--bind', `/proc/${pid}/ns/${kind}`, p[kind]]);
        if (r.code !== 0) throw new Error(`binding the pod's ${kind} namespace: ${r.stderr.trim()}`);
      }
    } catch (e: unknown) {
      holder.kill('SIGKILL');
      await exited;
      await this.remove(id);
      throw internal(`creating the pod's user namespace and its namespaces failed: ${e instanceof Error ? e.message : String(e)}`, { field: 'sandbox' });
    }
    holder.stdin.end('\n');
    await exited;
    return p;
  }

  /**
   * A process namespace for the pod (shareProcessNamespace), the one kind a
   * bind mount cannot keep: it ends with its PID 1. catatonit is that PID 1 (it
   * reaps what is reparented to it); it runs detached, so it outlives agent
   * restarts, and inside the pod's user namespace when it has one (the
   * containers mount /proc of it). `unshare --fork` stays as its parent.
   * Both carry the pod's id in their environment (pidNamespaceOwnerEnv): an
   * agent killed before it recorded the holder finds it by that on its next
   * start (pkg/cri/recover.ts).
   */
  async startPidNamespace(userNamespace?: string, sandboxId?: string): Promise<PidNamespaceHolder> {
    const unshare = [this.o.unshare, '--pid', '--fork', '--kill-child', '--', this.o.catatonit, '-P'];
    const [file, ...args] = userNamespace ? [this.o.nsenter, `--user=${userNamespace}`, '--', ...unshare] : unshare;
    const env = sandboxId ? { ...process.env, [pidNamespaceOwnerEnv]: sandboxId } : process.env;
    const parent = spawn(file!, args, { detached: true, stdio: 'ignore', env });
    const failed = new Promise<never>((_, reject) => {
      parent.once('error', reject);
      parent.once('exit', (code) => reject(new Error(`exit code ${code}`)));
    });
    failed.catch(() => undefined);
    try {
      for (let i = 0; i < 100; i++) {
        // nsenter execs unshare in place; unshare's one child is the holder.
        const children = await readFile(`/proc/${parent.pid}/task/${parent.pid}/children`, 'utf8').catch(() => '');
        const pid = Number.parseInt(children.trim().split(/\s+/)[0] ?? '', 10);
        if (pid > 0) {
          const comm = (await readFile(`/proc/${pid}/comm`, 'utf8').catch(() => '')).trim();
          if (comm === 'catatonit') {
            parent.unref();
            parent.removeAllListeners();
            const startTime = await startTimeOf(pid);
            if (startTime !== undefined) return { pid, startTime };
          }
        }
        await Promise.race([sleep(20), failed]);
      }
      throw new Error('catatonit did not start');
    } catch (e: unknown) {
      parent.kill('SIGKILL');
      throw internal(`starting the pod's process namespace failed: ${e instanceof Error ? e.message : String(e)}`, { field: 'sandbox' });
    }
  }

  /** Ends the pod's process namespace, and with it every process left in it; idempotent. */
  async stopPidNamespace(h: PidNamespaceHolder): Promise<void> {
    if ((await startTimeOf(h.pid)) !== h.startTime) return;
    try {
      process.kill(h.pid, 'SIGKILL');
    } catch {
      // Gone already.
    }
    for (let i = 0; i < 100 && (await startTimeOf(h.pid)) === h.startTime; i++) await sleep(20);
  }

  /** Whether the holder still runs (and is the same process). */
  async pidNamespaceAlive(h: PidNamespaceHolder): Promise<boolean> {
    return (await startTimeOf(h.pid)) === h.startTime;
  }

  /** Unmounts and removes them; idempotent. */
  async remove(id: string): Promise<void> {
    const p = this.paths(id);
    for (const f of [p.net, p.ipc, p.uts, p.user]) {
      // Not mounted (or gone) is fine: remove is idempotent.
      await runTool(this.o.umount, [f]).catch(() => undefined);
    }
    await rm(join(this.o.root, id), { recursive: true, force: true });
  }
}
