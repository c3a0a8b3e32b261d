import { spawn } from 'node:child_process';
import { existsSync } from 'node:fs';
import { mkdir, open, readFile, rm } from 'node:fs/promises';
import { dirname, join } from 'node:path';

import { unavailable } from '../../errdefs/errors.js';
import type { Logger } from '../../log/logger.js';
import type { NodeNamespace, NodeNamespaceDriver, TeardownReport } from '../node_namespace.js';
import { descendants, isAlive, namespaceOf, processesOf, sleep, startTimeOf, terminate } from '../procfs.js';
import { writeFileDurable } from '../../store/durable_file.js';

// The node namespace made by rootlesskit (Debian package): a user namespace
// mapped to the user's subuid/subgid range, a network namespace with
// slirp4netns on tap0, a mount namespace with /etc and /run copied up, and the
// builtin port driver. rootlesskit's child runs only a holder process (sleep),
// so the namespaces outlive every process of the agent; the runtime half joins
// them with nsenter (DESIGN.md, "Lifetimes").

export interface RootlesskitOptions {
  rootlesskit: string;
  slirp4netns: string;
  /** Argv of the holder process rootlesskit's child runs; must never exit on its own. */
  holderCommand: readonly string[];
  /** rootlesskit --state-dir; removed on teardown. */
  stateDir: string;
  /** JSON record of the live namespace (pids with start times, namespace ids). */
  recordPath: string;
  /** rootlesskit's and slirp4netns's stdout/stderr go here. */
  logPath: string;
  mtu: number;
  /**
   * Folders copied up besides /etc and /run (a writable tmpfs whose entries
   * link to the host's), e.g. /var/lib and /var/log for a kubelet, which
   * hard-codes /var/lib/kubelet/device-plugins and writes /var/log/pods.
   */
  extraCopyUp?: readonly string[];
  /** Environment for rootlesskit (PATH must reach newuidmap/newgidmap). */
  env: NodeJS.ProcessEnv;
  uid: number;
  log: Logger;
  startTimeoutMs?: number;
}

interface Record {
  parentPid: number;
  parentStart: number;
  holderPid: number;
  holderStart: number;
  userNs: string;
  netNs: string;
  mntNs: string;
}

export class RootlesskitDriver implements NodeNamespaceDriver {
  readonly name = 'rootlesskit';

  constructor(private readonly opts: RootlesskitOptions) {}

  /** The argv rootlesskit is started with (shown by `usernode check` and the docs). */
  argv(): string[] {
    const o = this.opts;
    return [
      o.rootlesskit,
      `--state-dir=${o.stateDir}`,
      '--net=slirp4netns',
      `--slirp4netns-binary=${o.slirp4netns}`,
      `--mtu=${o.mtu}`,
      '--disable-host-loopback',
      // auto: used where the host allows them (they need mount and seccomp
      // support in the user namespace), silently off where it does not.
      '--slirp4netns-sandbox=auto',
      '--slirp4netns-seccomp=auto',
      '--copy-up=/etc',
      '--copy-up=/run',
      ...(o.extraCopyUp ?? []).map((d) => `--copy-up=${d}`),
      // Mounts made on the host later (e.g. a new volume) still show inside.
      '--propagation=rslave',
      '--port-driver=builtin',
      '--',
      ...o.holderCommand,
    ];
  }

  async find(): Promise<NodeNamespace | undefined> {
    const rec = await this.readRecord();
    if (!rec) return undefined;
    if (await this.isLive(rec)) return this.describe(rec, false);
    this.opts.log.warn('found a dead node namespace record; cleaning it up', { holder: rec.holderPid });
    await this.teardown();
    return undefined;
  }

  async ensure(): Promise<NodeNamespace> {
    return (await this.find()) ?? (await this.create());
  }

  async teardown(): Promise<TeardownReport> {
    const o = this.opts;
    const rec = await this.readRecord();
    const stopped: string[] = [];
    let survivors: number[] = [];
    if (rec) {
      const procs = await processesOf(o.uid);
      const parentLive = isAlive(rec.parentPid) && (await startTimeOf(rec.parentPid)) === rec.parentStart;
      const roots = new Set<number>();
      if (parentLive) roots.add(rec.parentPid);
      for (const p of procs) if (p.userNs === rec.userNs) roots.add(p.pid);
      const all = descendants(procs, roots);
      // Workloads first (containers, conmon, the runtime half), then
      // rootlesskit, which takes slirp4netns and the holder down with it.
      const infra = new Set([rec.parentPid, rec.holderPid]);
      // Infrastructure: rootlesskit, its slirp4netns, the holder and the holder's sleep.
      const isInfra = (pid: number): boolean => {
        const ppid = procs.find((q) => q.pid === pid)?.ppid;
        return infra.has(pid) || ppid === rec.parentPid || ppid === rec.holderPid;
      };
      const workloads = [...all].filter((p) => !isInfra(p));
      if (workloads.length > 0) {
        const left = await terminate(workloads, 5000);
        stopped.push(`${workloads.length - left.length} process(es) inside the node namespace`);
      }
      if (parentLive) {
        await terminate([rec.parentPid], 5000);
        stopped.push(`rootlesskit (pid ${rec.parentPid}) with slirp4netns and the holder (pid ${rec.holderPid})`);
      }
      const rest = [...all].filter(isAlive);
      survivors = rest.length > 0 ? await terminate(rest, 1000) : [];
    }
    await rm(o.stateDir, { recursive: true, force: true });
    await rm(o.recordPath, { force: true });
    return { stopped, survivors };
  }

  private async create(): Promise<NodeNamespace> {
    const o = this.opts;
    await rm(o.stateDir, { recursive: true, force: true });
    await mkdir(dirname(o.stateDir), { recursive: true, mode: 0o700 });
    const logFile = await open(o.logPath, 'a', 0o600);
    const [file, ...args] = this.argv();
    o.log.info('creating the node namespace', { driver: this.name });
    const child = spawn(file!, args, { detached: true, stdio: ['ignore', logFile.fd, logFile.fd], env: o.env });
    let exited: string | undefined;
    let spawnError: Error | undefined;
    child.on('error', (e) => (spawnError = e));
    child.on('exit', (code, sig) => (exited = sig ? `signal ${sig}` : `exit code ${code}`));
    child.unref();
    await logFile.close();
    try {
      const holderPid = await this.waitForChild(() => spawnError ?? (exited ? new Error(exited) : undefined));
      const parentPid = child.pid!;
      const rec: Record = {
        parentPid,
        parentStart: (await startTimeOf(parentPid)) ?? 0,
        holderPid,
        holderStart: (await startTimeOf(holderPid)) ?? 0,
        userNs: (await namespaceOf(holderPid, 'user')) ?? '',
        netNs: (await namespaceOf(holderPid, 'net')) ?? '',
        mntNs: (await namespaceOf(holderPid, 'mnt')) ?? '',
      };
      if (rec.userNs === '' || rec.userNs === (await namespaceOf('self', 'user'))) {
        throw new Error(`rootlesskit's child (pid ${holderPid}) is not in a new user namespace`);
      }
      await writeFileDurable(o.recordPath, JSON.stringify(rec, null, 2) + '\n');
      o.log.info('node namespace ready', { holder: holderPid, rootlesskit: parentPid, netns: rec.netNs });
      return this.describe(rec, true);
    } catch (e: unknown) {
      // Undo: nothing of a half-made namespace may stay behind.
      if (child.pid !== undefined) {
        try {
          process.kill(-child.pid, 'SIGKILL');
        } catch {
          // Already gone.
        }
      }
      await rm(o.stateDir, { recursive: true, force: true });
      const tail = await this.logTail();
      throw unavailable(
        `could not create the node namespace with ${o.rootlesskit}: ${(e as Error).message}` +
          (tail ? `\nrootlesskit said:\n${tail}` : '') +
          `\nrun "usernode check" to see which host prerequisite is missing`,
        { field: 'rootlesskit', cause: e },
      );
    }
  }

  private async waitForChild(failed: () => Error | undefined): Promise<number> {
    const o = this.opts;
    const deadline = Date.now() + (o.startTimeoutMs ?? 20000);
    const childPidFile = join(o.stateDir, 'child_pid');
    const apiSock = join(o.stateDir, 'api.sock');
    for (;;) {
      const err = failed();
      if (err) throw err;
      // child_pid is written once the child's network is set up; api.sock once
      // the port driver listens.
      if (existsSync(childPidFile) && existsSync(apiSock)) {
        const pid = Number((await readFile(childPidFile, 'utf8')).trim());
        if (isAlive(pid)) return pid;
      }
      if (Date.now() > deadline) throw new Error(`timed out waiting for ${childPidFile} and ${apiSock}`);
      await sleep(25);
    }
  }

  private async isLive(rec: Record): Promise<boolean> {
    if (!isAlive(rec.parentPid) || !isAlive(rec.holderPid)) return false;
    if ((await startTimeOf(rec.parentPid)) !== rec.parentStart) return false;
    if ((await startTimeOf(rec.holderPid)) !== rec.holderStart) return false;
    return (await namespaceOf(rec.holderPid, 'net')) === rec.netNs;
  }

  private describe(rec: Record, created: boolean): NodeNamespace {
    return {
      holderPid: rec.holderPid,
      parentPid: rec.parentPid,
      userNs: rec.userNs,
      netNs: rec.netNs,
      mntNs: rec.mntNs,
      portApiSocket: join(this.opts.stateDir, 'api.sock'),
      stateDir: this.opts.stateDir,
      created,
    };
  }

  private async readRecord(): Promise<Record | undefined> {
    try {
      const raw = JSON.parse(await readFile(this.opts.recordPath, 'utf8')) as Partial<Record>;
      if (typeof raw.parentPid !== 'number' || typeof raw.holderPid !== 'number') return undefined;
      return raw as Record;
    } catch {
      return undefined;
    }
  }

  private async logTail(): Promise<string> {
    try {
      const text = await readFile(this.opts.logPath, 'utf8');
      return text.trim().split('\n').slice(-8).join('\n');
    } catch {
      return '';
    }
  }
}
