import { readdir, readFile, stat } from 'node:fs/promises';
import { basename, dirname, join } from 'node:path';

import type { Logger } from '../log/logger.js';
import { pidNamespaceOwnerEnv } from '../netns/pod_namespaces.js';
import { isAlive, processesOf, sleep, startTimeOf } from '../netns/procfs.js';
import type { ContainerRecord } from '../sandbox/container_store.js';
import type { SandboxRecord } from '../sandbox/sandbox_store.js';
import { movedAsideRecords } from '../store/json_records.js';
import { messageOf } from '../errdefs/errors.js';
import { releaseContainer } from './container_remove.js';
import { type ContainerRuntime, nowNs, refresh } from './containers.js';
import { podAttachment } from './pod_network.js';
import type { PodRuntime } from './pods.js';
import { removePodFiles } from './sandbox_remove.js';
import { mountedPaths, type PodResources, releasePodResources } from './sandbox_stop.js';

// Recovery at the start of the runtime half, as containerd's CRI plugin does
// in restart.go: the records are the truth; everything else a killed runtime
// half may have left is found by the id it is named by, and either adopted
// (its record says it exists) or released through the same functions
// StopPodSandbox, RemovePodSandbox and RemoveContainer use.
//
// The records are the commit point of RunPodSandbox and CreateContainer: they
// are written after every side effect, and every side effect is named by the
// id the record will have. So no intent record is needed: an id on disk, in
// the kernel or in a process that no record has is the leftover of a create
// that never answered (its caller got no id and will retry).
//
//   side effect (by RPC order)      named by the id in                 found at start in
//   RunPodSandbox
//     pod namespaces (bind mounts)  <runtime>/netns/<pod>/{net,ipc,…}   that folder, mountinfo
//     catatonit (shared pid ns)     its environment: USERNODE_POD_SANDBOX_ID  /proc/*/environ
//     veth, IP lease, NAT rules     CNI_CONTAINERID = pod id           host-local's lease files
//                                                                      (CNI DEL of the id; portmap's
//                                                                      chains carry the id)
//     host port (rootlesskit)       forwards to the leased address     port list: a pod-CIDR target
//                                                                      no READY record owns
//     hosts, resolv.conf            <data>/pods/files/<pod>            that folder
//   CreateContainer
//     rootfs (overlay mount)        <data>/snapshots/containers/<ctr>  that folder, mountinfo
//     bundle, exit file, attach     <runtime>/{bundles,exits,attach}/<ctr>  those folders
//     conmon + runc create          conmon's argv (-c <ctr>), runc's root <runtime>/runc/<ctr>
//   StartContainer: runc start, then the record says RUNNING: a CREATED record
//     whose container runc reports running was started: adopted as RUNNING.
//   Stop/RemovePodSandbox: idempotent; a crash midway leaves the record,
//     and the pod is released again when the caller repeats the call (a READY
//     pod whose network is half gone fails the checks below: NOTREADY).
//   PullImage: blobs land in content/ingest and layers in layers/*.unpack-*
//     until renamed into place (removed by the stores' init); blobs and
//     layers no image record names are collected after recovery.
//
// What the killed process had started and not seen end (a CNI plugin, runc
// create, iptables) still runs for a moment: recovery first waits until no
// such process names one of the ids, then looks.
//
// Containers: the exit code comes from conmon's exit file. When conmon is gone
// without writing one, nobody holds the process's output or will see its end:
// runc is asked, a process still running is killed, and the container is
// EXITED with exit code 255 and reason "Unknown", as containerd marks a
// container whose task it cannot find (unknownExitCode, unknownExitReason).

export const unknownExitCode = 255;
export const unknownExitReason = 'Unknown';

export interface RecoveryOptions {
  pods: PodRuntime;
  containers: ContainerRuntime;
  log: Logger;
  /** The pod network: a host port forward to an address in it belongs to a pod. */
  podCIDR: string;
  /** host-local's lease folder of the pod network: one file per address, naming the CNI container id. */
  ipamDir: string;
  /** Where containers of pods with a user namespace of their own see their rootfs (ContainerRootfsOptions.viewRoot). */
  viewRoot?: string;
  /** The longest wait for processes the killed runtime half started to end; default 10 s. */
  settleMs?: number;
}

export interface RecoveryReport {
  podsAdopted: number;
  podsLost: number;
  podsReleased: number;
  containersAdopted: number;
  containersExited: number;
  containersReleased: number;
  portsReleased: number;
  leasesReleased: number;
  holdersKilled: number;
}

const hexId = /(?<![0-9a-f])[0-9a-f]{64}(?![0-9a-f])/g;
const isId = (n: string): boolean => /^[0-9a-f]{64}$/.test(n);

/** Adopts what the records name, releases what they do not; see the table above. */
export async function recoverRuntime(o: RecoveryOptions): Promise<RecoveryReport> {
  const { pods, containers: c, log } = o;
  const report: RecoveryReport = { podsAdopted: 0, podsLost: 0, podsReleased: 0, containersAdopted: 0, containersExited: 0, containersReleased: 0, portsReleased: 0, leasesReleased: 0, holdersKilled: 0 };
  const found = await idsOnDisk(o);
  // A record moved aside because it did not parse still owns what it named:
  // an operator may mend and restore it, so nothing of its id is released.
  const quarantined = new Set(movedAsideRecords.map((m) => basename(m.file).replace(/\.json$/, '')).filter(isId));
  for (const id of quarantined) log.warn('the record of this id did not parse (moved aside): its resources are left as they are', { id: id.slice(0, 12) });
  const known = new Set([...pods.store.list().map((r) => r.id), ...c.store.list().map((r) => r.id), ...found.pods, ...found.containers, ...found.leases.keys()]);
  const procs = await settle(known, o.settleMs ?? 10000, log);

  // Containers first: a pod's release stops what runs in it.
  for (const r of c.store.list()) {
    try {
      const after = await reconcileContainer(r, c, log);
      if (after.state === 'CONTAINER_EXITED' && r.state !== 'CONTAINER_EXITED') report.containersExited++;
      else report.containersAdopted++;
    } catch (e: unknown) {
      log.warn('recovering a container failed', { id: r.id.slice(0, 12), error: messageOf(e) });
    }
  }
  const orphanContainers = new Set([...found.containers, ...procs.filter((p) => p.kind === 'monitor').flatMap((p) => p.ids)].filter((id) => !c.store.find(id) && !pods.store.find(id) && !quarantined.has(id)));
  for (const id of orphanContainers) {
    try {
      // conmon first: it would write an exit file after the release removed it.
      for (const p of procs.filter((q) => q.kind === 'monitor' && q.ids.includes(id))) report.holdersKilled += kill(p);
      await releaseContainer(c, id);
      report.containersReleased++;
      log.info('released a container no record names', { id: id.slice(0, 12) });
    } catch (e: unknown) {
      log.warn('releasing a leftover container failed', { id: id.slice(0, 12), error: messageOf(e) });
    }
  }

  const mounts = await mountedPaths();
  for (const r of pods.store.list()) {
    if (r.state !== 'SANDBOX_READY') continue;
    try {
      const lost = await lostBecause(r, pods, mounts);
      if (!lost) {
        report.podsAdopted++;
        continue;
      }
      log.warn('pod sandbox is broken; marking it NOTREADY', { id: r.id.slice(0, 12), reason: lost });
      await releasePodResources(pods, r);
      const { network: _n, ...rest } = r;
      void _n;
      await pods.store.update({ ...rest, state: 'SANDBOX_NOTREADY' });
      report.podsLost++;
    } catch (e: unknown) {
      log.warn('recovering a pod sandbox failed', { id: r.id.slice(0, 12), error: messageOf(e) });
    }
  }

  // Process namespace holders of pods that do not own a live one (any more).
  for (const p of procs.filter((q) => q.kind === 'pod-holder')) {
    const owner = pods.store.find(p.ids[0]!);
    const owned = owner?.state === 'SANDBOX_READY' && owner.pidNamespace !== undefined && (await startTimeOf(owner.pidNamespace.pid)) === owner.pidNamespace.startTime;
    if (!owned) report.holdersKilled += kill(p);
  }

  const orphanPods = new Set([...found.pods, ...found.leases.keys(), ...procs.filter((p) => p.kind === 'pod-holder').flatMap((p) => p.ids)]);
  for (const id of orphanPods) {
    const r = pods.store.find(id);
    if (r?.network || quarantined.has(id)) continue;
    try {
      const lease = found.leases.get(id);
      if (r) {
        // A NOTREADY pod whose lease outlived its network (a crash inside DEL): DEL again.
        if (lease) await pods.cni.del(podAttachment(id, r.metadata, '', r.portMappings), undefined);
        if (lease) report.leasesReleased++;
        continue;
      }
      const paths = pods.namespaces.paths(id);
      const leftovers: PodResources = {
        id,
        metadata: { name: '', namespace: '', uid: '', attempt: 0 },
        namespaces: { net: paths.net, uts: paths.uts },
        // Any one mapping makes portmap's DEL run; it removes every rule of the id.
        portMappings: [{ hostPort: 1, containerPort: 1, protocol: 'tcp' }],
        network: { ip: lease ?? '', additionalIps: [], cniResult: undefined, hostPortForwards: [] },
      };
      if (lease || mounts.has(paths.net)) await releasePodResources(pods, leftovers);
      await removePodFiles(pods, id);
      if (lease) report.leasesReleased++;
      report.podsReleased++;
      log.info('released a pod sandbox no record names', { id: id.slice(0, 12), ip: lease ?? 'none' });
    } catch (e: unknown) {
      log.warn('releasing a leftover pod sandbox failed', { id: id.slice(0, 12), error: messageOf(e) });
    }
  }

  // Host ports into the pod network that no READY pod owns (added before its record was written).
  try {
    const owned = pods.store.list().filter((r) => r.state === 'SANDBOX_READY' && r.network);
    for (const f of await pods.ports.list()) {
      if (!inCidr(f.childIP, o.podCIDR)) continue;
      if ([...quarantined].some((id) => found.leases.get(id) === f.childIP)) continue;
      if (owned.some((r) => r.network!.ip === f.childIP && (r.network!.hostPortForwards ?? []).includes(f.id))) continue;
      await pods.ports.remove(f.id);
      report.portsReleased++;
      log.info('released a host port no pod owns', { hostPort: f.hostPort, to: `${f.childIP}:${f.childPort}` });
    }
  } catch (e: unknown) {
    log.warn('sweeping host ports failed', { error: messageOf(e) });
  }
  return report;
}

/**
 * A container record brought up to date: its exit file if conmon wrote one;
 * else, when conmon is gone (or the record never learnt that runc started
 * it), what runc says. Also the exit watcher's periodic check of RUNNING
 * containers, so one whose conmon dies does not stay RUNNING forever.
 */
export async function reconcileContainer(r0: ContainerRecord, c: ContainerRuntime, log: Logger): Promise<ContainerRecord> {
  let r = await refresh(r0, c);
  if (r.state === 'CONTAINER_EXITED') return r;
  const monitored = c.monitor.alive ? await c.monitor.alive(r.bundle, r.id) : true;
  if (monitored && r.state === 'CONTAINER_RUNNING') return r;
  const st = await c.runtime.state(r.id).catch(() => undefined);
  if (r.state === 'CONTAINER_CREATED') {
    const exitFile = await stat(join(c.exitDir, r.id)).then(
      () => true,
      () => false,
    );
    if (monitored && st?.status === 'created' && !exitFile) return r;
    if ((st && st.status !== 'created') || exitFile) {
      // runc start ran and the record never said so (a crash between the two): it was started.
      const startedAt = (st && st.status !== 'stopped' ? await processStartNs(st.pid) : undefined) ?? nowNs();
      r = (await c.store.modify(r.id, (cur) => (cur.state === 'CONTAINER_CREATED' ? { ...cur, state: 'CONTAINER_RUNNING', startedAt } : cur))) ?? r;
      log.info('container was started before the restart; adopting it as RUNNING', { id: r.id.slice(0, 12), runc: st?.status ?? 'unknown' });
      r = await refresh(r, c);
      if (r.state === 'CONTAINER_EXITED' || monitored) return r;
    }
  }
  // conmon is gone: it may have written the exit file just before it ended.
  r = await refresh(r, c);
  if (r.state === 'CONTAINER_EXITED') return r;
  // Nobody holds its output or will see it end: it must not run on unseen.
  if (st && st.status !== 'stopped') await c.runtime.kill(r.id, 'SIGKILL').catch(() => undefined);
  const how = st ? `runc reported it ${st.status}` : 'runc does not know it';
  log.warn('container monitor (conmon) is gone without an exit code; marking the container exited', { id: r.id.slice(0, 12), runc: st?.status ?? 'unknown' });
  const finishedAt = nowNs();
  return (
    (await c.store.modify(r.id, (cur) =>
      cur.state === 'CONTAINER_EXITED'
        ? cur
        : { ...cur, state: 'CONTAINER_EXITED', exitCode: unknownExitCode, reason: unknownExitReason, message: `its monitor (conmon) is gone and left no exit code; ${how}`, finishedAt },
    )) ?? r
  );
}

/** Why a READY pod can no longer be: its namespaces or network are gone (a reboot, a wiped runtime folder, a crash inside Stop). */
async function lostBecause(r: SandboxRecord, pods: PodRuntime, mounts: Set<string>): Promise<string | undefined> {
  if (r.namespaces.net && !mounts.has(r.namespaces.net)) return 'its network namespace is gone';
  if (r.pidNamespace && !(await pods.namespaces.pidNamespaceAlive(r.pidNamespace))) return "its process namespace's PID 1 is gone";
  if (r.namespaces.net && r.network) {
    const attach = podAttachment(r.id, r.metadata, r.namespaces.net, r.portMappings);
    return pods.cni.check(attach, r.network.cniResult as Parameters<typeof pods.cni.check>[1]).then(
      () => undefined,
      (e: unknown) => `its network fails the CNI CHECK: ${messageOf(e)}`,
    );
  }
  return undefined;
}

interface FoundIds {
  pods: Set<string>;
  containers: Set<string>;
  /** Pod id → its leased address. */
  leases: Map<string, string>;
}

async function idsOnDisk(o: RecoveryOptions): Promise<FoundIds> {
  const names = async (dir: string): Promise<string[]> => (await readdir(dir).catch(() => [] as string[])).filter(isId);
  const c = o.containers;
  const podsFound = new Set([...(await names(dirname(dirname(o.pods.namespaces.paths('x').net)))), ...(await names(o.pods.podsDir))]);
  const snapshots = dirname(c.rootfs.dir('x'));
  const containersFound = new Set<string>();
  for (const d of [c.bundlesDir, c.runcRoot, c.exitDir, c.socketDir, snapshots, ...(o.viewRoot ? [o.viewRoot] : [])]) for (const n of await names(d)) containersFound.add(n);
  // Mount sources pinned for a create the kill cut short (mount_sources.ts).
  for (const n of await c.mountSources.ids().catch(() => [] as string[])) containersFound.add(n);
  // A mount whose folder is gone from a listing still names its id.
  for (const m of await mountedPaths()) {
    if (m.startsWith(`${snapshots}/`)) containersFound.add(m.slice(snapshots.length + 1, snapshots.length + 65));
  }
  const leases = new Map<string, string>();
  for (const n of await readdir(o.ipamDir).catch(() => [] as string[])) {
    if (!/^\d+\.\d+\.\d+\.\d+$/.test(n)) continue;
    const id = (await readFile(join(o.ipamDir, n), 'utf8').catch(() => '')).split(/\r?\n/)[0]?.trim() ?? '';
    if (isId(id)) leases.set(id, n);
  }
  return { pods: new Set([...podsFound].filter(isId)), containers: new Set([...containersFound].filter(isId)), leases };
}

interface NamingProcess {
  pid: number;
  startTime: number | undefined;
  comm: string;
  ids: string[];
  /**
   * monitor: conmon of a container; pod-holder: catatonit or its unshare;
   * exec: a runc exec session (lives as long as its client); transient:
   * anything else the killed runtime half started (CNI plugin, iptables,
   * runc create/start/delete, mount, cp) and that ends by itself.
   */
  kind: 'monitor' | 'pod-holder' | 'exec' | 'transient';
}

/** This user's processes that name one of `ids` in their argv or environment (CNI_CONTAINERID, the holder's variable). */
async function processesNaming(ids: Set<string>): Promise<NamingProcess[]> {
  const out: NamingProcess[] = [];
  for (const p of await processesOf(process.getuid?.() ?? 0)) {
    if (p.pid === process.pid || p.ppid === process.pid) continue;
    const argv = await readFile(`/proc/${p.pid}/cmdline`, 'utf8').catch(() => '');
    const named = new Set<string>();
    for (const m of argv.matchAll(hexId)) if (ids.has(m[0])) named.add(m[0]);
    let owner = false;
    const env = await readFile(`/proc/${p.pid}/environ`, 'utf8').catch(() => '');
    for (const kv of env.split('\0')) {
      const eq = kv.indexOf('=');
      const [k, v] = [kv.slice(0, eq), kv.slice(eq + 1)];
      if (k === 'CNI_CONTAINERID' && ids.has(v)) named.add(v);
      if (k === pidNamespaceOwnerEnv && ids.has(v)) {
        named.add(v);
        owner = true;
      }
    }
    if (named.size === 0) continue;
    const args = argv.split('\0');
    const kind = owner ? 'pod-holder' : p.comm === 'conmon' ? 'monitor' : args.includes('exec') ? 'exec' : 'transient';
    out.push({ pid: p.pid, startTime: await startTimeOf(p.pid), comm: p.comm, ids: [...named], kind });
  }
  return out;
}

/** Waits (at most `ms`) until no transient process names one of `ids`; returns the processes that name one then. */
async function settle(ids: Set<string>, ms: number, log: Logger): Promise<NamingProcess[]> {
  const deadline = Date.now() + ms;
  for (;;) {
    const procs = await processesNaming(ids);
    let transient = procs.filter((p) => p.kind === 'transient');
    if (transient.length === 0) return procs;
    if (Date.now() > deadline) {
      log.warn('processes the previous runtime half started still run; recovering anyway', { processes: transient.map((p) => `${p.comm}(${p.pid})`).join(', ') });
      return procs;
    }
    while (transient.length > 0 && Date.now() < deadline) {
      await sleep(25);
      const still: NamingProcess[] = [];
      for (const p of transient) if (isAlive(p.pid) && (await startTimeOf(p.pid)) === p.startTime) still.push(p);
      transient = still;
    }
  }
}

function kill(p: NamingProcess): number {
  try {
    process.kill(p.pid, 'SIGKILL');
    return 1;
  } catch {
    return 0; // Gone already.
  }
}

/** When process `pid` started, in nanoseconds since the epoch (/proc/stat btime + its start in clock ticks, USER_HZ 100). */
async function processStartNs(pid: number): Promise<string | undefined> {
  const ticks = await startTimeOf(pid);
  const btime = Number(/^btime (\d+)$/m.exec(await readFile('/proc/stat', 'utf8').catch(() => ''))?.[1]);
  if (ticks === undefined || !Number.isFinite(btime)) return undefined;
  return String(BigInt(btime) * 1000000000n + BigInt(ticks) * 10000000n);
}

function inCidr(ip: string, cidr: string): boolean {
  const [net, bits] = cidr.split('/');
  const n = Number(bits);
  const toInt = (a: string): number | undefined => {
    const p = a.split('.').map(Number);
    return p.length === 4 && p.every((x) => Number.isInteger(x) && x >= 0 && x <= 255) ? ((p[0]! << 24) | (p[1]! << 16) | (p[2]! << 8) | p[3]!) >>> 0 : undefined;
  };
  const a = toInt(ip);
  const b = toInt(net ?? '');
  if (a === undefined || b === undefined || !(n >= 0 && n <= 32)) return false;
  const mask = n === 0 ? 0 : (~0 << (32 - n)) >>> 0;
  return (a & mask) >>> 0 === (b & mask) >>> 0;
}
