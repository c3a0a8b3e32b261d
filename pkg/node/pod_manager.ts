import { chmod, mkdir, open, rm, writeFile } from 'node:fs/promises';
import { totalmem } from 'node:os';
import { isAbsolute, join } from 'node:path';

import { criCall, type CriClients } from '../../proto/client.js';
import type { Logger } from '../log/logger.js';
import type { LifecycleHandler, Probe } from './container_spec.js';
import { removeContainerLogs } from './container_log_manager.js';
import { tailCriLog } from './cri_log.js';
import { containerEnv, expandCommand, type NodeAllocatable, type PodFields } from './pod_env.js';
import type { PodContainer, PodManifest } from './pod_manifest.js';
import { type ClusterObjects, type CriMount, criMountsOf, podsWithVolumes, type PodVolumes, setUpPodVolumes, tearDownPodVolumes } from './pod_volumes.js';
import { linuxResources, qosClass, sandboxResources } from './pod_resources.js';
import { type NodeDns, sandboxDns } from './pod_dns.js';
import { pullAuthsFor } from './pull_secrets.js';
import { criContainerSecurity, criSandboxSecurity, nonRootProblem } from './security_context.js';
import { apiTime, type ContainerStateJson, type ContainerStatusJson, podConditions, type PodConditionJson, podPhase, type PodStatus } from './pod_status.js';
import { type Prober, proberByKind, type ProbeResult } from './prober.js';
import { execProber } from './prober_exec.js';

// The node half's pod worker, as kubelet drives a CRI runtime: for every pod
// it should run, a sandbox and its containers through the CRI client on the
// runtime's socket (any CRI runtime would do). Init containers run one at a
// time to success before the app containers; containers are kept to the
// pod's restart policy with kubelet's back-off (10 s doubling to 5 min);
// probes decide readiness and kill unhealthy containers; a deleted pod (or a
// static pod no longer wanted) is stopped gracefully: preStop hooks, then
// StopContainer within the grace period, then the sandbox. Pods are found
// again by their labels after an agent restart, so healthy ones and finished
// init containers are not run again. Status and events go out through
// callbacks; the API source turns them into the status subresource and Events.
//
//   pod:        (new) ──RunPodSandbox──▶ init containers ──▶ app containers ──▶ (deleted) terminating ──▶ terminated
//   container:  none ──Create/Start──▶ running ──exit──▶ exited ──(policy, back-off)──▶ next attempt

export const managedLabel = 'usernode.io/managed-pod';

/** The CRI namespace modes of a pod (kubelet's namespacesForPod). */
function namespaceOptions(pod: PodManifest): { network: string; pid: string; ipc: string } {
  return { network: pod.hostNetwork ? 'NODE' : 'POD', pid: pod.hostPID ? 'NODE' : pod.shareProcessNamespace ? 'POD' : 'CONTAINER', ipc: pod.hostIPC ? 'NODE' : 'POD' };
}
const uidLabel = 'io.kubernetes.pod.uid';
const containerNameLabel = 'io.kubernetes.container.name';
const backoffStartMs = 10000;
const backoffMaxMs = 300000;
/** A container that ran this long starts its back-off afresh (kubelet). */
const backoffResetMs = 600000;
/** kubelet never gives a container less than this to stop (minimumGracePeriodInSeconds). */
const minGraceSeconds = 2;
/** What kubelet reads of a termination message file. */
const messageFileBytes = 4096;
/** FallbackToLogsOnError: the end of the log, as kubelet takes it. */
const logMessageLines = 80;
const logMessageBytes = 2048;

export interface PodEvent {
  type: 'Normal' | 'Warning';
  reason: string;
  message: string;
  container?: string;
}

interface CriContainer {
  id: string;
  state: string;
  metadata: { name: string; attempt: number };
  labels: Record<string, string>;
}

interface CriContainerStatus {
  id: string;
  state: string;
  metadata: { name: string; attempt: number } | null;
  startedAt: string;
  finishedAt: string;
  exitCode: number;
  reason: string;
  message: string;
  imageRef: string;
  logPath: string;
}

type ProbeKind = 'startup' | 'liveness' | 'readiness';

interface ProbeState {
  nextAt: number;
  successes: number;
  failures: number;
  busy: boolean;
}

interface ContainerState {
  /** The back-off the next exit waits (0: none yet: the first restart is at once, as kubelet's). */
  backoffMs: number;
  /** The exited container a BackOff event was sent for (one event per exit). */
  backoffEventFor: string;
  /** Why it is not running, when the worker knows better than the runtime (back-off, pull or create errors). */
  waiting: { reason: string; message: string } | undefined;
  pullBackoffMs: number;
  pullNotBefore: number;
  pullError: string;
  /** The container the probe states are for; a new container starts them afresh. */
  probedId: string;
  probes: Partial<Record<ProbeKind, ProbeState>>;
  started: boolean;
  ready: boolean;
  /** Asked for by a probe: the next sync kills that container with this grace (probes pause until it is done). */
  kill: { containerId: string; graceSeconds: number; message: string } | undefined;
  latest: CriContainerStatus | undefined;
  previous: CriContainerStatus | undefined;
  /** Termination messages of exited containers, by id (they do not change). */
  messages: Map<string, string>;
}

interface PodState {
  pod: PodManifest;
  sandboxId: string;
  attempt: number;
  sandboxReady: boolean;
  podIPs: string[];
  containers: Map<string, ContainerState>;
  failures: number;
  notBefore: number;
  startTime: number;
  initDone: boolean;
  status: PodStatus | undefined;
  sent: string;
  terminating: Promise<void> | undefined;
  terminated: boolean;
  /** activeDeadlineSeconds passed: its containers were stopped and the pod is Failed, for good. */
  deadlineExceeded: boolean;
}

export interface PodManagerOptions {
  /** The node's name and address, for fieldRefs (spec.nodeName, status.hostIP). */
  nodeName?: string;
  hostIP?: string;
  cri: CriClients;
  log: Logger;
  /** Where each pod's container logs go (kubelet's /var/log/pods). */
  logRoot: string;
  /**
   * Where each pod's files go (kubelet's /var/lib/kubelet/pods): the
   * termination message files mounted at terminationMessagePath. Without it,
   * messages come only from the runtime and, for FallbackToLogsOnError, the log.
   */
  podsDir?: string;
  syncMs?: number;
  /** How often due probes are looked for. */
  probeTickMs?: number;
  now?: () => number;
  /** A sleep hook's wait; tests pass a fake. */
  sleep?: (ms: number) => Promise<void>;
  /** The node's memory, for Burstable containers' OOM score (kubelet's machine info). */
  memoryCapacityBytes?: number;
  /** Called when a pod's status changes (not on every sync). */
  onStatus?: (pod: PodManifest, status: PodStatus) => void;
  onEvent?: (pod: PodManifest, e: PodEvent) => void;
  /** A pod stopped for good (deleted, or a static pod no longer wanted): its sandbox is gone. */
  onTerminated?: (pod: PodManifest) => void;
  /** Runs probes and hooks; the default runs exec ones through the CRI and fails the network kinds. */
  prober?: Prober;
  /** For containerID `<runtime>://<id>` (the CRI Version's runtime name). */
  runtimeName?: string;
  /** configMaps, secrets and tokens from the API server; undefined without a control plane. */
  cluster?: ClusterObjects;
  /** Pod volumes on disk (emptyDir, configMap, downwardAPI): <volumeRoot>/<podUid>/volumes/<name>. */
  volumeRoot: string;
  /** Pod volumes on a tmpfs (Memory emptyDir, secret, projected): see memoryVolumeRoot. */
  memoryVolumeRoot: string;
  /** The node's user, who must own every hostPath (default: this process's uid). */
  uid?: number;
  /** For resourceFieldRefs to unset limits. */
  allocatable?: NodeAllocatable;
  /** Wraps a command to run as root of the node namespace, to remove what containers left under their own ids. */
  asNodeRoot?: (argv: string[]) => string[];
  /** Volume content (configMaps, secrets, tokens) is refreshed at most this often (default 10 s). */
  volumeSyncMs?: number;
  /** Cluster DNS and the node's resolv.conf, for the pods' DNS (kubelet's clusterDNS, clusterDomain). */
  dns?: NodeDns;
  /** Every CRI call the worker makes, when it ends (kubelet's runtime operation metrics). */
  onCriCall?: (method: string, seconds: number, ok: boolean) => void;
  /** A pod first reached Running; firstSeenMs is when the worker first had it (kubelet_pod_start_duration_seconds). */
  onPodRunning?: (pod: PodManifest, firstSeenMs: number, nowMs: number) => void;
}

const nsToMs = (ns: string | undefined): number => (ns && ns !== '0' ? Number(BigInt(ns) / 1000000n) : 0);

export class PodManager {
  private desired = new Map<string, PodManifest>();
  private readonly pods = new Map<string, PodState>();
  private timer: NodeJS.Timeout | undefined;
  private probeTimer: NodeJS.Timeout | undefined;
  private running: Promise<void> | undefined;
  private again = false;
  /** Nothing is synced (so nothing removed) before the first desired set is known. */
  private known = false;
  /** Syncs and probes run by themselves only once started; tests drive them (syncOnce, probeOnce). */
  private live = false;
  private readonly now: () => number;
  private readonly sleep: (ms: number) => Promise<void>;
  private readonly prober: Prober;
  private readonly runtimeName: string;
  /** Set-up volumes by pod uid, and when their content is next refreshed. */
  private readonly volumes = new Map<string, { volumes: PodVolumes; refreshAt: number; refreshing: boolean }>();
  /** Has every pod source been seen whole? Until then no pod is removed for being unknown. */
  private complete = false;

  constructor(private readonly o: PodManagerOptions) {
    this.now = o.now ?? Date.now;
    this.sleep = o.sleep ?? ((ms) => new Promise((r) => setTimeout(r, ms).unref()));
    this.prober = o.prober ?? proberByKind({ exec: execProber(o.cri) });
    this.runtimeName = o.runtimeName ?? 'usernode';
  }

  private call<T>(service: 'runtime' | 'image', method: string, req: object): Promise<T> {
    const start = performance.now();
    const p = criCall<T>(this.o.cri, service, method, req);
    const done = (ok: boolean) => () => this.o.onCriCall?.(method, (performance.now() - start) / 1000, ok);
    p.then(done(true), done(false));
    return p;
  }

  private event(pod: PodManifest, e: PodEvent): void {
    this.o.onEvent?.(pod, e);
  }

  /** The pods the node should run now; the difference is made by the next sync. */
  setDesired(pods: readonly PodManifest[], complete = true): void {
    this.desired = new Map(pods.map((p) => [p.uid, p]));
    this.complete = complete;
    this.known = true;
    this.kick();
  }

  /** The last status of every pod the worker has (kubelet's /pods). */
  statuses(): Map<string, PodStatus> {
    return new Map([...this.pods].flatMap(([uid, st]) => (st.status ? [[uid, st.status] as const] : [])));
  }

  start(): void {
    this.live = true;
    this.timer = setInterval(() => this.kick(), this.o.syncMs ?? 2000);
    this.timer.unref();
    this.probeTimer = setInterval(() => void this.probeOnce(), this.o.probeTickMs ?? 250);
    this.probeTimer.unref();
    this.kick();
  }

  /** Stops syncing; the pods keep running (as kubelet's do when kubelet stops). */
  async stop(): Promise<void> {
    clearInterval(this.timer);
    clearInterval(this.probeTimer);
    await this.running;
  }

  /** One full sync now (tests drive time through `now` and call this). */
  async syncOnce(): Promise<void> {
    this.known = true;
    await this.running;
    await this.sync();
  }

  /** Resolves when every termination under way has finished. */
  async settled(): Promise<void> {
    await Promise.all([...this.pods.values()].map((st) => st.terminating));
  }

  private kick(): void {
    if (!this.known || !this.live) return;
    if (this.running) {
      this.again = true;
      return;
    }
    this.running = (async () => {
      do {
        this.again = false;
        await this.sync().catch((e: unknown) => this.o.log.warn('pod sync failed', { error: (e as Error).message }));
      } while (this.again);
    })().finally(() => (this.running = undefined));
  }

  private newPodState(pod: PodManifest, sandboxId: string, attempt: number): PodState {
    return {
      pod,
      sandboxId,
      attempt,
      sandboxReady: false,
      podIPs: [],
      containers: new Map(),
      failures: 0,
      notBefore: 0,
      startTime: this.now(),
      initDone: pod.initContainers.length === 0,
      status: undefined,
      sent: '',
      terminating: undefined,
      terminated: false,
      deadlineExceeded: false,
    };
  }

  private async sync(): Promise<void> {
    // Managed sandboxes: one of a desired pod not known yet (made before an
    // agent restart) is adopted, not restarted; one of a pod the worker knows
    // but no longer wants is stopped gracefully; any other goes.
    const listed = await this.call<{ items: Array<{ id: string; state: string; createdAt: string; metadata: { attempt: number }; labels: Record<string, string> }> }>('runtime', 'ListPodSandbox', {
      filter: { labelSelector: { [managedLabel]: 'true' } },
    });
    // A ready sandbox first: of two of one pod, the ready one is kept.
    for (const s of [...listed.items].sort((a, b) => Number(b.state === 'SANDBOX_READY') - Number(a.state === 'SANDBOX_READY'))) {
      const uid = s.labels[uidLabel];
      const known = uid ? this.pods.get(uid) : undefined;
      const want = uid ? this.desired.get(uid) : undefined;
      if (uid && want && !known) {
        const adopted = this.newPodState(want, s.id, s.metadata.attempt);
        // The pod started when its sandbox was made, not when this agent found it.
        adopted.startTime = nsToMs(s.createdAt) || adopted.startTime;
        this.pods.set(uid, adopted);
        continue;
      }
      if (known && known.sandboxId === s.id) continue;
      // A source not seen whole yet (the API server after an agent restart) may still name it.
      if (!known && !this.complete) continue;
      await this.remove(s.id);
    }
    if (this.complete) await this.tearDownRemovedPodVolumes();
    for (const [uid, st] of this.pods) {
      const want = this.desired.get(uid);
      if (want) st.pod = want;
      else if (st.terminated) this.pods.delete(uid);
      else this.terminate(st);
    }
    for (const [uid, pod] of this.desired) {
      const st = this.pods.get(uid);
      if (pod.deletionTimestamp !== undefined) {
        if (st) this.terminate(st);
        else {
          // Deleted before it ran here: nothing to stop.
          const done = this.newPodState(pod, '', 0);
          done.terminated = true;
          this.pods.set(uid, done);
          this.o.onTerminated?.(pod);
        }
        continue;
      }
      if (st?.terminating || st?.terminated) continue;
      if (st && pod.activeDeadlineSeconds !== undefined && !st.deadlineExceeded && this.now() - st.startTime >= pod.activeDeadlineSeconds * 1000) await this.exceedDeadline(st);
      if (st?.deadlineExceeded) {
        await this.publish(st, false);
        continue;
      }
      // A pod of the same name still stopping (a static pod's old version) goes first, as kubelet's pod workers order them.
      if ([...this.pods.values()].some((o) => o.pod.uid !== uid && o.terminating && o.pod.name === pod.name && o.pod.namespace === pod.namespace)) continue;
      try {
        await this.syncPod(pod);
      } catch (e: unknown) {
        const cur = this.pods.get(uid);
        if (cur) {
          cur.failures++;
          cur.notBefore = this.now() + Math.min(backoffStartMs * 2 ** (cur.failures - 1), backoffMaxMs);
        }
        this.o.log.warn('pod could not be started; retrying with back-off', { pod: `${pod.namespace}/${pod.name}`, error: (e as Error).message });
      }
      const cur = this.pods.get(uid);
      if (cur) await this.publish(cur, false);
    }
  }

  private async remove(sandboxId: string): Promise<void> {
    await this.call('runtime', 'StopPodSandbox', { podSandboxId: sandboxId });
    await this.call('runtime', 'RemovePodSandbox', { podSandboxId: sandboxId });
    this.o.log.info('pod removed', { sandbox: sandboxId.slice(0, 12) });
  }

  private sandboxConfig(pod: PodManifest, attempt: number): object {
    const sandbox = criSandboxSecurity(pod.security);
    const dns = sandboxDns(pod, this.o.dns ?? { clusterDNS: [], clusterDomain: 'cluster.local', host: { servers: [], searches: [], options: [] } });
    const ports = pod.containers.flatMap((c) => c.ports.filter((p) => p.hostPort !== undefined));
    return {
      metadata: { name: pod.name, namespace: pod.namespace, uid: pod.uid, attempt },
      hostname: pod.hostname ?? pod.name,
      logDirectory: this.logDirectory(pod),
      ...(dns.config ? { dnsConfig: dns.config } : {}),
      portMappings: ports.map((p) => ({ protocol: p.protocol, containerPort: p.containerPort, hostPort: p.hostPort, hostIp: p.hostIP ?? '' })),
      labels: { ...pod.labels, 'io.kubernetes.pod.name': pod.name, 'io.kubernetes.pod.namespace': pod.namespace, [uidLabel]: pod.uid, [managedLabel]: 'true' },
      annotations: pod.annotations,
      linux: { securityContext: { ...sandbox.securityContext, namespaceOptions: namespaceOptions(pod) }, sysctls: sandbox.sysctls, resources: sandboxResources(pod) },
    };
  }

  private logDirectory(pod: PodManifest): string {
    return join(this.o.logRoot, `${pod.namespace}_${pod.name}_${pod.uid}`);
  }

  private containerState(st: PodState, name: string): ContainerState {
    let cs = st.containers.get(name);
    if (!cs) {
      cs = {
        backoffMs: 0,
        backoffEventFor: '',
        waiting: undefined,
        pullBackoffMs: 0,
        pullNotBefore: 0,
        pullError: '',
        probedId: '',
        probes: {},
        started: false,
        ready: false,
        kill: undefined,
        latest: undefined,
        previous: undefined,
        messages: new Map(),
      };
      st.containers.set(name, cs);
    }
    return cs;
  }

  private async syncPod(pod: PodManifest): Promise<void> {
    let st = this.pods.get(pod.uid);
    if (st && this.now() < st.notBefore) return;
    type SandboxStatus = { status?: { state: string; network?: { ip: string; additionalIps?: Array<{ ip: string }> } } };
    let status: SandboxStatus | undefined;
    if (st && st.sandboxId !== '') {
      status = await this.call<SandboxStatus>('runtime', 'PodSandboxStatus', { podSandboxId: st.sandboxId }).catch(() => undefined);
      if (status?.status?.state !== 'SANDBOX_READY') {
        // Gone or not ready (its network lost): a new sandbox, the next attempt, as kubelet does.
        await this.remove(st.sandboxId).catch(() => undefined);
        st.sandboxId = '';
        st.attempt++;
        st.containers.clear();
        st.initDone = pod.initContainers.length === 0;
        status = undefined;
      }
    }
    if (!st) {
      st = this.newPodState(pod, '', 0);
      this.pods.set(pod.uid, st);
    }
    // Volumes before the sandbox, as kubelet mounts them before it: a pod whose volumes fail does not start.
    const volumes = await this.podVolumes(pod);
    const sandboxConfig = this.sandboxConfig(pod, st.attempt);
    if (st.sandboxId === '') {
      st.sandboxReady = false;
      const dnsWarning = sandboxDns(pod, this.o.dns ?? { clusterDNS: [], clusterDomain: 'cluster.local', host: { servers: [], searches: [], options: [] } }).warning;
      if (dnsWarning && this.o.dns) this.event(pod, { type: 'Warning', reason: 'MissingClusterDNS', message: `pod: "${pod.name}_${pod.namespace}(${pod.uid})". ${dnsWarning}` });
      const r = await this.call<{ podSandboxId: string }>('runtime', 'RunPodSandbox', { config: sandboxConfig }).catch((e: unknown) => {
        this.event(pod, { type: 'Warning', reason: 'FailedCreatePodSandBox', message: `Failed to create pod sandbox: ${(e as Error).message}` });
        throw e;
      });
      st.sandboxId = r.podSandboxId;
      this.o.log.info('pod started', { pod: `${pod.namespace}/${pod.name}`, sandbox: r.podSandboxId.slice(0, 12) });
    }
    status ??= await this.call<SandboxStatus>('runtime', 'PodSandboxStatus', { podSandboxId: st.sandboxId });
    st.sandboxReady = status.status?.state === 'SANDBOX_READY';
    // A pod on the node's network has the node's address (kubelet).
    st.podIPs = pod.hostNetwork ? [this.o.hostIP ?? ''].filter((ip) => ip !== '') : [status.status?.network?.ip ?? '', ...(status.status?.network?.additionalIps ?? []).map((a) => a.ip)].filter((ip) => ip !== '');
    const fields: PodFields = { podIP: st.podIPs[0] ?? '', podIPs: st.podIPs, hostIP: this.o.hostIP ?? '', nodeName: this.o.nodeName ?? '' };
    const list = await this.call<{ containers: CriContainer[] }>('runtime', 'ListContainers', { filter: { podSandboxId: st.sandboxId } });
    const byName = (name: string): CriContainer[] => list.containers.filter((x) => x.labels[containerNameLabel] === name).sort((a, b) => b.metadata.attempt - a.metadata.attempt);

    // Kills a probe asked for since the last sync.
    for (const c of [...pod.initContainers, ...pod.containers]) {
      const cs = st.containers.get(c.name);
      const kill = cs?.kill;
      if (!cs || !kill) continue;
      const latest = byName(c.name)[0];
      if (latest?.id === kill.containerId && latest.state === 'CONTAINER_RUNNING') {
        await this.killContainer(pod, st, c, latest.id, this.now() + kill.graceSeconds * 1000, kill.message);
        latest.state = 'CONTAINER_EXITED';
      }
      cs.kill = undefined;
    }

    // Init containers, one at a time, in order; a sidecar only has to have started.
    let initDone = true;
    const appsStarted = pod.containers.some((c) => byName(c.name).length > 0);
    for (const c of pod.initContainers) {
      const sidecar = c.restartPolicy === 'Always';
      const r = await this.runContainer(pod, st, c, sidecar ? 'sidecar' : 'init', byName(c.name), sandboxConfig, fields, volumes);
      if (sidecar) {
        if ((r === 'running' && this.containerState(st, c.name).started) || appsStarted) continue;
      } else if (r === 'succeeded' || (r !== 'failed' && appsStarted && st.initDone)) continue;
      initDone = false;
      break;
    }
    st.initDone = initDone;
    if (initDone) for (const c of pod.containers) await this.runContainer(pod, st, c, 'app', byName(c.name), sandboxConfig, fields, volumes);
    st.failures = 0;
  }

  private async containerStatus(id: string): Promise<CriContainerStatus> {
    return (await this.call<{ status: CriContainerStatus }>('runtime', 'ContainerStatus', { containerId: id })).status;
  }

  /**
   * Brings one container to where its pod's policy wants it: started if
   * never run, restarted after the back-off if it exited and should, left
   * alone if running. Says where it stands.
   */
  private async runContainer(
    pod: PodManifest,
    st: PodState,
    c: PodContainer,
    role: 'init' | 'sidecar' | 'app',
    mine: CriContainer[],
    sandboxConfig: object,
    fields: PodFields,
    volumes: PodVolumes,
  ): Promise<'running' | 'succeeded' | 'failed' | 'waiting'> {
    const cs = this.containerState(st, c.name);
    const latest = mine[0];
    cs.latest = latest ? await this.containerStatus(latest.id) : undefined;
    const prev = mine[1];
    if (!prev) cs.previous = undefined;
    else if (cs.previous?.id !== prev.id || cs.previous.state !== 'CONTAINER_EXITED') cs.previous = await this.containerStatus(prev.id);
    const now = this.now();
    if (cs.latest?.state === 'CONTAINER_RUNNING') {
      cs.waiting = undefined;
      this.watchProbes(c, cs, cs.latest);
      return 'running';
    }
    if (cs.latest?.state === 'CONTAINER_CREATED') {
      await this.startContainer(pod, st, c, cs, cs.latest.id);
      return 'waiting';
    }
    cs.ready = false;
    let attempt = 0;
    if (cs.latest && latest) {
      const exitCode = cs.latest.exitCode;
      const restart = role === 'sidecar' || (role === 'init' ? exitCode !== 0 && pod.restartPolicy !== 'Never' : pod.restartPolicy === 'Always' || (pod.restartPolicy === 'OnFailure' && exitCode !== 0));
      if (!restart) {
        cs.waiting = undefined;
        return exitCode === 0 ? 'succeeded' : 'failed';
      }
      // kubelet's back-off: the first restart is at once; an exit within the
      // back-off of the one before waits it out, and the next back-off doubles.
      const finished = nsToMs(cs.latest.finishedAt);
      if (cs.backoffMs > 0 && now - finished < cs.backoffMs) {
        const message = `back-off ${cs.backoffMs / 1000}s restarting failed container=${c.name} pod=${pod.name}_${pod.namespace}(${pod.uid})`;
        cs.waiting = { reason: 'CrashLoopBackOff', message };
        if (cs.backoffEventFor !== latest.id) {
          cs.backoffEventFor = latest.id;
          this.event(pod, { type: 'Warning', reason: 'BackOff', message: `Back-off restarting failed container ${c.name} in pod ${pod.name}_${pod.namespace}(${pod.uid})`, container: c.name });
        }
        return 'waiting';
      }
      const ranMs = finished - nsToMs(cs.latest.startedAt);
      cs.backoffMs = cs.backoffMs === 0 || ranMs > backoffResetMs ? backoffStartMs : Math.min(cs.backoffMs * 2, backoffMaxMs);
      // One exited container is kept (lastState, `kubectl logs --previous`).
      for (const old of mine.slice(1)) {
        await this.call('runtime', 'RemoveContainer', { containerId: old.id });
        // Its log and the files rotated from it go with it (kubelet's containerLogManager.Clean).
        await removeContainerLogs(join(this.logDirectory(pod), `${c.name}/${old.metadata.attempt}.log`));
        if (this.o.podsDir) await rm(join(this.o.podsDir, pod.uid, 'containers', c.name, `${old.metadata.attempt}-termination-log`), { force: true });
      }
      cs.previous = cs.latest;
      attempt = latest.metadata.attempt + 1;
      this.o.log.info('restarting container', { pod: `${pod.namespace}/${pod.name}`, container: c.name, exitCode, attempt });
    }
    if (!(await this.ensureImage(pod, c, cs, sandboxConfig))) return 'waiting';
    let config: object;
    try {
      const messageFile = await this.messageFile(pod, c, attempt);
      config = await this.containerConfig(pod, c, attempt, fields, qosClass(pod), volumes, messageFile ? [{ containerPath: c.terminationMessagePath, hostPath: messageFile, readonly: false, propagation: 'PROPAGATION_PRIVATE', selinuxRelabel: false, recursiveReadOnly: false }] : []);
    } catch (e: unknown) {
      cs.waiting = { reason: 'CreateContainerConfigError', message: (e as Error).message };
      this.event(pod, { type: 'Warning', reason: 'Failed', message: `Error: ${(e as Error).message}`, container: c.name });
      return 'waiting';
    }
    let id: string;
    try {
      id = (await this.call<{ containerId: string }>('runtime', 'CreateContainer', { podSandboxId: st.sandboxId, config, sandboxConfig })).containerId;
    } catch (e: unknown) {
      cs.waiting = { reason: 'CreateContainerError', message: (e as Error).message };
      this.event(pod, { type: 'Warning', reason: 'Failed', message: `Error: ${(e as Error).message}`, container: c.name });
      return 'waiting';
    }
    this.event(pod, { type: 'Normal', reason: 'Created', message: `Created container: ${c.name}`, container: c.name });
    return (await this.startContainer(pod, st, c, cs, id)) ? 'running' : 'waiting';
  }

  /** The CreateContainer config of container `c` (kuberuntime's generateContainerConfig); an error is its CreateContainerConfigError. */
  private async containerConfig(pod: PodManifest, c: PodContainer, attempt: number, f: PodFields, qos: ReturnType<typeof qosClass>, volumes: PodVolumes, extraMounts: CriMount[]): Promise<object> {
    if (c.security.runAsNonRoot ?? pod.security.runAsNonRoot) {
      const img = await this.call<{ image?: { uid?: { value: string } | null; username?: string } | null }>('image', 'ImageStatus', { image: { image: c.image } });
      const problem = nonRootProblem(pod.security, c.security, { ...(img.image?.uid ? { uid: Number(img.image.uid.value) } : {}), ...(img.image?.username ? { username: img.image.username } : {}) });
      if (problem) throw new Error(problem);
    }
    const made = await this.containerSettings(pod, c, volumes, f);
    // The volume roots travel in an annotation: the runtime binds each host path opened beneath its volume.
    const cri = criMountsOf([...made.mounts, ...extraMounts]);
    return {
      metadata: { name: c.name, attempt },
      image: { image: c.image },
      command: made.command,
      args: made.args,
      // KeyValue.value is bytes in CRI v1.37.
      envs: made.envs.map((e) => ({ key: e.key, value: Buffer.from(e.value) })),
      mounts: cri.mounts,
      annotations: cri.annotations,
      workingDir: c.workingDir ?? '',
      logPath: `${c.name}/${attempt}.log`,
      labels: { [containerNameLabel]: c.name, [uidLabel]: pod.uid },
      linux: {
        resources: linuxResources(c, qos, this.o.memoryCapacityBytes ?? totalmem()),
        securityContext: { ...criContainerSecurity(pod.security, c.security), namespaceOptions: namespaceOptions(pod) },
      },
    };
  }

  /** A fresh, empty file for the container to write its termination message in (kubelet's containers/<name>/<id>). */
  private async messageFile(pod: PodManifest, c: PodContainer, attempt: number): Promise<string | undefined> {
    if (!this.o.podsDir) return undefined;
    const dir = join(this.o.podsDir, pod.uid, 'containers', c.name);
    await mkdir(dir, { recursive: true, mode: 0o750 });
    const file = join(dir, `${attempt}-termination-log`);
    // World-writable as kubelet's: the container's user may be anyone.
    await writeFile(file, '');
    await chmod(file, 0o666);
    return file;
  }

  private async readMessageFile(pod: PodManifest, c: PodContainer, attempt: number): Promise<string> {
    if (!this.o.podsDir) return '';
    const f = await open(join(this.o.podsDir, pod.uid, 'containers', c.name, `${attempt}-termination-log`)).catch(() => undefined);
    if (!f) return '';
    try {
      const buf = Buffer.alloc(messageFileBytes);
      const { bytesRead } = await f.read(buf, 0, messageFileBytes, 0);
      return buf.subarray(0, bytesRead).toString();
    } finally {
      await f.close();
    }
  }

  /** StartContainer, then the postStart hook; a failed hook kills the container (kubelet). False if it is not running. */
  private async startContainer(pod: PodManifest, st: PodState, c: PodContainer, cs: ContainerState, id: string): Promise<boolean> {
    try {
      await this.call('runtime', 'StartContainer', { containerId: id });
    } catch (e: unknown) {
      cs.waiting = { reason: 'RunContainerError', message: (e as Error).message };
      this.event(pod, { type: 'Warning', reason: 'Failed', message: `Error: ${(e as Error).message}`, container: c.name });
      return false;
    }
    cs.waiting = undefined;
    this.event(pod, { type: 'Normal', reason: 'Started', message: `Started container ${c.name}`, container: c.name });
    const hook = c.lifecycle.postStart;
    if (hook) {
      const r = await this.runHook(hook, id, st, pod.terminationGracePeriodSeconds * 1000);
      if (r.result === 'failure') {
        this.event(pod, { type: 'Warning', reason: 'FailedPostStartHook', message: `PostStartHook failed: ${r.output}`, container: c.name });
        await this.killContainer(pod, st, c, id, this.now() + pod.terminationGracePeriodSeconds * 1000, `FailedPostStartHook`);
        cs.latest = await this.containerStatus(id);
        return false;
      }
    }
    cs.latest = await this.containerStatus(id);
    if (cs.latest.state === 'CONTAINER_RUNNING') this.watchProbes(c, cs, cs.latest);
    return cs.latest.state === 'CONTAINER_RUNNING';
  }

  private async ensureImage(pod: PodManifest, c: PodContainer, cs: ContainerState, sandboxConfig: object): Promise<boolean> {
    const image = c.image;
    const have = await this.call<{ image?: { id: string } | null }>('image', 'ImageStatus', { image: { image } });
    if (have.image && c.imagePullPolicy !== 'Always') {
      this.event(pod, { type: 'Normal', reason: 'Pulled', message: `Container image "${image}" already present on machine`, container: c.name });
      return true;
    }
    if (!have.image && c.imagePullPolicy === 'Never') {
      cs.waiting = { reason: 'ErrImageNeverPull', message: `Container image "${image}" is not present with pull policy of Never` };
      this.event(pod, { type: 'Warning', reason: 'ErrImageNeverPull', message: cs.waiting.message, container: c.name });
      return false;
    }
    if (this.now() < cs.pullNotBefore) {
      cs.waiting = { reason: 'ImagePullBackOff', message: `Back-off pulling image "${image}": ErrImagePull: ${cs.pullError}` };
      this.event(pod, { type: 'Normal', reason: 'BackOff', message: `Back-off pulling image "${image}"`, container: c.name });
      return false;
    }
    this.event(pod, { type: 'Normal', reason: 'Pulling', message: `Pulling image "${image}"`, container: c.name });
    const t0 = this.now();
    try {
      await this.pull(pod, image, sandboxConfig);
    } catch (e: unknown) {
      cs.pullError = (e as Error).message;
      cs.pullBackoffMs = cs.pullBackoffMs === 0 ? backoffStartMs : Math.min(cs.pullBackoffMs * 2, backoffMaxMs);
      cs.pullNotBefore = this.now() + cs.pullBackoffMs;
      cs.waiting = { reason: 'ErrImagePull', message: cs.pullError };
      this.event(pod, { type: 'Warning', reason: 'Failed', message: `Failed to pull image "${image}": ${cs.pullError}`, container: c.name });
      this.event(pod, { type: 'Warning', reason: 'Failed', message: 'Error: ErrImagePull', container: c.name });
      return false;
    }
    cs.pullBackoffMs = 0;
    this.event(pod, { type: 'Normal', reason: 'Pulled', message: `Successfully pulled image "${image}" in ${((this.now() - t0) / 1000).toFixed(3)}s`, container: c.name });
    return true;
  }

  /**
   * PullImage with each matching credential of the pod's imagePullSecrets in
   * turn, then without (kubelet's keyring); a secret that cannot be read is
   * passed over with a warning, as kubelet does.
   */
  private async pull(pod: PodManifest, image: string, sandboxConfig: object): Promise<void> {
    const secrets: Array<{ data: Record<string, Buffer> }> = [];
    for (const name of pod.imagePullSecrets) {
      const s = await this.o.cluster?.secret(pod.namespace, name).catch(() => undefined);
      if (s) secrets.push(s);
      else this.o.log.warn('an image pull secret cannot be read; pulling without it', { pod: `${pod.namespace}/${pod.name}`, secret: name });
    }
    const auths = pullAuthsFor(image, secrets);
    let last: unknown;
    for (const auth of [...auths, undefined]) {
      try {
        await this.call('image', 'PullImage', { image: { image }, ...(auth ? { auth } : {}), sandboxConfig });
        return;
      } catch (e: unknown) {
        last = e;
      }
    }
    throw last;
  }

  /** preStop (within the grace), then StopContainer with what is left of it, at least kubelet's 2 s. */
  /**
   * kubelet's active deadline: a pod active on the node longer than
   * activeDeadlineSeconds is Failed (DeadlineExceeded); its containers are
   * stopped within its grace and never restarted; the pod stays, with its
   * logs, until it is deleted.
   */
  private async exceedDeadline(st: PodState): Promise<void> {
    const pod = st.pod;
    st.deadlineExceeded = true;
    this.event(pod, { type: 'Normal', reason: 'DeadlineExceeded', message: 'Pod was active on the node longer than the specified deadline' });
    if (st.sandboxId === '') return;
    const list = await this.call<{ containers: CriContainer[] }>('runtime', 'ListContainers', { filter: { podSandboxId: st.sandboxId } });
    const deadlineMs = this.now() + pod.terminationGracePeriodSeconds * 1000;
    await Promise.all(
      [...pod.initContainers, ...pod.containers].map(async (c) => {
        const running = list.containers.find((x) => x.labels[containerNameLabel] === c.name && x.state === 'CONTAINER_RUNNING');
        if (running) await this.killContainer(pod, st, c, running.id, deadlineMs, `Stopping container ${c.name}`).catch(() => undefined);
        const cs = st.containers.get(c.name);
        if (cs && running) cs.latest = await this.containerStatus(running.id).catch(() => cs.latest);
        if (cs) cs.ready = false;
      }),
    );
  }

  private async killContainer(pod: PodManifest, st: PodState, c: PodContainer, id: string, deadlineMs: number, message: string): Promise<void> {
    this.event(pod, { type: 'Normal', reason: 'Killing', message, container: c.name });
    const hook = c.lifecycle.preStop;
    if (hook) {
      const r = await this.runHook(hook, id, st, Math.max(0, deadlineMs - this.now()));
      if (r.result === 'failure') this.event(pod, { type: 'Warning', reason: 'FailedPreStopHook', message: `PreStopHook failed: ${r.output}`, container: c.name });
    }
    const timeout = Math.max(minGraceSeconds, Math.ceil((deadlineMs - this.now()) / 1000));
    await this.call('runtime', 'StopContainer', { containerId: id, timeout });
  }

  private async runHook(h: LifecycleHandler, containerId: string, st: PodState, timeoutMs: number): Promise<{ result: 'success' | 'failure'; output: string }> {
    if (h.kind === 'sleep') {
      await this.sleep(Math.min(h.seconds * 1000, timeoutMs));
      return { result: 'success', output: '' };
    }
    return this.prober.run(h, { containerId, podIP: st.podIPs[0] ?? '', timeoutMs }).catch((e: unknown) => ({ result: 'failure' as const, output: (e as Error).message }));
  }

  /** Probe states for a container seen running: a new container starts them afresh (kubelet's probe workers). */
  private watchProbes(c: PodContainer, cs: ContainerState, s: CriContainerStatus): void {
    if (cs.probedId !== s.id) {
      cs.probedId = s.id;
      const startedAt = nsToMs(s.startedAt) || this.now();
      const at = (p: Probe): ProbeState => ({ nextAt: startedAt + p.initialDelaySeconds * 1000, successes: 0, failures: 0, busy: false });
      cs.probes = {
        ...(c.startupProbe ? { startup: at(c.startupProbe) } : {}),
        ...(c.livenessProbe ? { liveness: at(c.livenessProbe) } : {}),
        ...(c.readinessProbe ? { readiness: at(c.readinessProbe) } : {}),
      };
      cs.started = !c.startupProbe;
      cs.ready = cs.started && !c.readinessProbe;
    }
  }

  /** Runs every probe that is due, and waits for them (tests call it after moving `now`). */
  async probeOnce(): Promise<void> {
    const runs: Array<Promise<void>> = [];
    for (const st of this.pods.values()) {
      if (st.terminating || st.terminated) continue;
      for (const c of [...st.pod.initContainers.filter((x) => x.restartPolicy === 'Always'), ...st.pod.containers]) {
        const cs = st.containers.get(c.name);
        if (!cs || cs.latest?.state !== 'CONTAINER_RUNNING' || cs.probedId !== cs.latest.id || cs.kill) continue;
        for (const kind of ['startup', 'liveness', 'readiness'] as const) {
          const ps = cs.probes[kind];
          const spec = kind === 'startup' ? c.startupProbe : kind === 'liveness' ? c.livenessProbe : c.readinessProbe;
          if (!ps || !spec || ps.busy || this.now() < ps.nextAt) continue;
          // Liveness and readiness wait for the startup probe.
          if (kind !== 'startup' && !cs.started) {
            ps.nextAt = this.now() + spec.periodSeconds * 1000;
            continue;
          }
          ps.busy = true;
          runs.push(this.runProbe(st, c, cs, kind, spec, ps).finally(() => (ps.busy = false)));
        }
      }
    }
    await Promise.all(runs);
  }

  private async runProbe(st: PodState, c: PodContainer, cs: ContainerState, kind: ProbeKind, spec: Probe, ps: ProbeState): Promise<void> {
    const id = cs.probedId;
    let r: ProbeResult;
    try {
      r = await this.prober.run(spec.handler, { containerId: id, podIP: st.podIPs[0] ?? '', timeoutMs: spec.timeoutSeconds * 1000 });
    } catch (e: unknown) {
      // The prober could not probe (kubelet's probe error): no result, so no count towards a restart.
      ps.nextAt = this.now() + spec.periodSeconds * 1000;
      this.o.log.warn('a probe could not be made; it is tried again next period', { pod: `${st.pod.namespace}/${st.pod.name}`, container: c.name, probe: kind, error: (e as Error).message });
      return;
    }
    ps.nextAt = this.now() + spec.periodSeconds * 1000;
    if (r.warning) this.event(st.pod, { type: 'Warning', reason: 'ProbeWarning', message: `${kind === 'startup' ? 'Startup' : kind === 'liveness' ? 'Liveness' : 'Readiness'} probe warning: ${r.output}`, container: c.name });
    // The container changed meanwhile: the result is of one gone.
    if (cs.probedId !== id || cs.probes[kind] !== ps) return;
    const pod = st.pod;
    const name = kind === 'startup' ? 'Startup' : kind === 'liveness' ? 'Liveness' : 'Readiness';
    if (r.result === 'success') {
      ps.failures = 0;
      ps.successes++;
      if (ps.successes < spec.successThreshold) return;
      if (kind === 'startup') {
        // Done: the startup probe stops and the others begin.
        delete cs.probes.startup;
        cs.started = true;
        cs.ready = !c.readinessProbe;
        this.kick();
      } else if (kind === 'readiness' && !cs.ready) {
        cs.ready = true;
        this.kick();
      }
      return;
    }
    ps.successes = 0;
    ps.failures++;
    this.event(pod, { type: 'Warning', reason: 'Unhealthy', message: `${name} probe failed: ${r.output}`, container: c.name });
    if (ps.failures < spec.failureThreshold) return;
    if (kind === 'readiness') {
      if (cs.ready) {
        cs.ready = false;
        this.kick();
      }
      return;
    }
    // Liveness or startup failed: the container is killed and the restart policy decides what follows.
    ps.failures = 0;
    cs.ready = false;
    cs.kill = {
      containerId: id,
      graceSeconds: spec.terminationGracePeriodSeconds ?? pod.terminationGracePeriodSeconds,
      message: `Container ${c.name} failed ${kind} probe, will be restarted`,
    };
    this.kick();
  }

  /** Stops a pod for good, once (the promise is kept until it is done; a failure lets the next sync try again). */
  private terminate(st: PodState): void {
    if (st.terminating || st.terminated) return;
    st.terminating = this.terminateNow(st)
      .then(() => {
        st.terminated = true;
        if (!this.desired.has(st.pod.uid)) this.pods.delete(st.pod.uid);
        this.o.onTerminated?.(st.pod);
      })
      .catch((e: unknown) => this.o.log.warn('pod could not be stopped; retrying', { pod: `${st.pod.namespace}/${st.pod.name}`, error: (e as Error).message }))
      .finally(() => (st.terminating = undefined));
  }

  private async terminateNow(st: PodState): Promise<void> {
    const pod = st.pod;
    const grace = pod.deletionGracePeriodSeconds ?? pod.terminationGracePeriodSeconds;
    const deadline = this.now() + grace * 1000;
    this.o.log.info('stopping pod', { pod: `${pod.namespace}/${pod.name}`, graceSeconds: grace });
    if (st.sandboxId !== '') {
      const list = await this.call<{ containers: CriContainer[] }>('runtime', 'ListContainers', { filter: { podSandboxId: st.sandboxId } });
      const live = (specs: readonly PodContainer[]): Array<Promise<void>> =>
        specs.flatMap((c) => {
          const latest = list.containers.filter((x) => x.labels[containerNameLabel] === c.name).sort((a, b) => b.metadata.attempt - a.metadata.attempt)[0];
          return latest && latest.state !== 'CONTAINER_EXITED' ? [this.killContainer(pod, st, c, latest.id, deadline, `Stopping container ${c.name}`)] : [];
        });
      // App containers first, then the sidecars (and any init container still running), as kubelet orders them.
      await Promise.all(live(pod.containers));
      await Promise.all(live(pod.initContainers));
      for (const c of [...pod.initContainers, ...pod.containers]) {
        const cs = st.containers.get(c.name);
        const latest = list.containers.filter((x) => x.labels[containerNameLabel] === c.name).sort((a, b) => b.metadata.attempt - a.metadata.attempt)[0];
        if (!latest) continue;
        const s = this.containerState(st, c.name);
        s.latest = await this.containerStatus(latest.id).catch(() => cs?.latest);
        s.waiting = undefined;
        s.ready = false;
      }
    }
    st.sandboxReady = false;
    // The final status, with the exit codes, goes out before the sandbox (and with it the containers) does.
    await this.publish(st, true);
    if (st.sandboxId !== '') await this.remove(st.sandboxId);
    if (this.o.podsDir) await rm(join(this.o.podsDir, pod.uid), { recursive: true, force: true });
    // With its containers gone nothing reads the pod's logs: they go too, rotated files and all (kubelet's pod log GC).
    await rm(this.logDirectory(pod), { recursive: true, force: true });
  }

  private async terminationMessage(pod: PodManifest, c: PodContainer, s: CriContainerStatus, cs: ContainerState): Promise<string> {
    const known = cs.messages.get(s.id);
    if (known !== undefined) return known;
    let message = s.message || (await this.readMessageFile(pod, c, s.metadata?.attempt ?? 0));
    if (message === '' && c.terminationMessagePolicy === 'FallbackToLogsOnError' && s.exitCode !== 0 && s.logPath !== '') {
      const path = isAbsolute(s.logPath) ? s.logPath : join(this.logDirectory(pod), s.logPath);
      const text = (await tailCriLog(path, logMessageLines).catch(() => []))
        .map((l) => l.text)
        .join('');
      message = Buffer.from(text).subarray(-logMessageBytes).toString();
    }
    cs.messages.set(s.id, message);
    return message;
  }

  private terminatedState(s: CriContainerStatus, message: string): ContainerStateJson {
    return {
      terminated: {
        exitCode: s.exitCode,
        reason: s.reason || (s.exitCode === 0 ? 'Completed' : 'Error'),
        ...(message ? { message } : {}),
        startedAt: apiTime(nsToMs(s.startedAt)),
        finishedAt: apiTime(nsToMs(s.finishedAt)),
        containerID: `${this.runtimeName}://${s.id}`,
      },
    };
  }

  private containerStatusJson(st: PodState, c: PodContainer, role: 'init' | 'app'): ContainerStatusJson {
    const cs = this.containerState(st, c.name);
    const latest = cs.latest;
    const exited = (s: CriContainerStatus | undefined): ContainerStateJson | undefined => (s?.state === 'CONTAINER_EXITED' ? this.terminatedState(s, cs.messages.get(s.id) ?? s.message) : undefined);
    let state: ContainerStateJson;
    let lastState: ContainerStateJson | Record<string, never> = exited(cs.previous?.id !== latest?.id ? cs.previous : undefined) ?? {};
    if (cs.waiting) {
      state = { waiting: cs.waiting };
      lastState = exited(latest) ?? lastState;
    } else if (latest?.state === 'CONTAINER_RUNNING') state = { running: { startedAt: apiTime(nsToMs(latest.startedAt)) } };
    else if (latest?.state === 'CONTAINER_EXITED') state = exited(latest)!;
    else state = { waiting: { reason: role === 'app' && !st.initDone ? 'PodInitializing' : 'ContainerCreating' } };
    const running = 'running' in state;
    return {
      name: c.name,
      state,
      lastState,
      ready: running && cs.ready,
      started: running && cs.started,
      restartCount: latest?.metadata?.attempt ?? 0,
      image: c.image,
      imageID: latest?.imageRef ?? '',
      ...(latest ? { containerID: `${this.runtimeName}://${latest.id}` } : {}),
    };
  }

  /** Works out the pod's status and sends it if it changed. */
  private async publish(st: PodState, terminal: boolean): Promise<void> {
    const pod = st.pod;
    await this.fillMessages(st);
    const init = pod.initContainers.map((c) => this.containerStatusJson(st, c, 'init'));
    const app = pod.containers.map((c) => this.containerStatusJson(st, c, 'app'));
    const phase = st.deadlineExceeded ? 'Failed' : podPhase(pod, init, app, terminal);
    const hostIP = this.o.hostIP ?? '';
    const status: PodStatus = {
      phase,
      conditions: podConditions(pod, { sandboxReady: st.sandboxReady, phase, init, app }, st.status?.conditions ?? ([] as PodConditionJson[]), this.now()),
      containerStatuses: app,
      initContainerStatuses: init,
      ...(st.podIPs.length > 0 ? { podIP: st.podIPs[0]!, podIPs: st.podIPs.map((ip) => ({ ip })) } : {}),
      ...(hostIP ? { hostIP, hostIPs: [{ ip: hostIP }] } : {}),
      startTime: apiTime(st.startTime),
      qosClass: qosClass(pod),
      ...(st.deadlineExceeded ? { reason: 'DeadlineExceeded', message: 'Pod was active on the node longer than the specified deadline' } : {}),
    };
    if (phase === 'Running' && st.status?.phase !== 'Running') this.o.onPodRunning?.(pod, st.startTime, this.now());
    st.status = status;
    const json = JSON.stringify(status);
    if (json === st.sent) return;
    st.sent = json;
    this.o.onStatus?.(pod, status);
  }

  private async fillMessages(st: PodState): Promise<void> {
    for (const c of [...st.pod.initContainers, ...st.pod.containers]) {
      const cs = st.containers.get(c.name);
      for (const s of [cs?.latest, cs?.previous]) if (cs && s?.state === 'CONTAINER_EXITED') await this.terminationMessage(st.pod, c, s, cs);
    }
  }

  /**
   * The pod's volumes, set up before its sandbox. Their content (configMaps,
   * secrets, tokens) is refreshed at most every volumeSyncMs, in the
   * background, as kubelet's volume manager does: a slow or absent API server
   * never holds up the pod worker (restarts, probes, other pods).
   */
  private async podVolumes(pod: PodManifest): Promise<PodVolumes> {
    const have = this.volumes.get(pod.uid);
    if (have) {
      if (this.now() >= have.refreshAt && !have.refreshing) {
        have.refreshing = true;
        void this.setUpVolumes(pod)
          .then(
            (volumes) => (have.volumes = volumes),
            (e: unknown) => this.o.log.warn('pod volumes could not be refreshed; the pod keeps their last content', { pod: `${pod.namespace}/${pod.name}`, error: (e as Error).message }),
          )
          .finally(() => {
            have.refreshing = false;
            have.refreshAt = this.now() + (this.o.volumeSyncMs ?? 10000);
          });
      }
      return have.volumes;
    }
    try {
      // A pod already running (adopted after an agent restart) keeps the content it has until the refresh.
      const adopted = (this.pods.get(pod.uid)?.sandboxId ?? '') !== '';
      const volumes = await this.setUpVolumes(pod, adopted);
      for (const note of volumes.notes) this.o.log.warn('not enforced rootless', { pod: `${pod.namespace}/${pod.name}`, note });
      this.volumes.set(pod.uid, { volumes, refreshAt: adopted ? this.now() : this.now() + (this.o.volumeSyncMs ?? 10000), refreshing: false });
      return volumes;
    } catch (e: unknown) {
      this.event(pod, { type: 'Warning', reason: 'FailedMount', message: (e as Error).message });
      throw Object.assign(new Error(`volumes cannot be set up: ${(e as Error).message}`), { reason: 'FailedMount', cause: e });
    }
  }

  private setUpVolumes(pod: PodManifest, reuseWritten = false): Promise<PodVolumes> {
    return setUpPodVolumes(pod, {
      reuseWritten,
      root: this.o.volumeRoot,
      memoryRoot: this.o.memoryVolumeRoot,
      uid: this.o.uid ?? process.getuid?.() ?? 0,
      now: this.now,
      ...(this.o.cluster ? { cluster: this.o.cluster } : {}),
      ...(this.o.allocatable ? { allocatable: this.o.allocatable } : {}),
    });
  }

  /** Env, mounts and the expanded command of a container about to be made; an error says why it cannot be (kubelet's CreateContainerConfigError). */
  private async containerSettings(pod: PodManifest, c: PodContainer, volumes: PodVolumes, f: PodFields): Promise<{ envs: Array<{ key: string; value: string }>; mounts: CriMount[]; command: string[]; args: string[] }> {
    try {
      const envs = await containerEnv(
        pod,
        c,
        { ...f, allocatable: this.o.allocatable ?? { cpu: '0', memory: '0', 'ephemeral-storage': '0' }, warn: (message) => this.o.log.warn('env keys skipped', { pod: `${pod.namespace}/${pod.name}`, container: c.name, message }) },
        this.o.cluster,
      );
      return { envs, mounts: await volumes.mounts(c, envs), command: expandCommand(c.command, envs), args: expandCommand(c.args, envs) };
    } catch (e: unknown) {
      const err = e as Error & { field?: string };
      const where = err.field && !err.message.startsWith(err.field) ? `${err.field}: ` : '';
      throw Object.assign(new Error(`container ${c.name} cannot be made: ${where}${err.message}`), { reason: 'CreateContainerConfigError', cause: e });
    }
  }

  /** Volumes of pods the node no longer runs (removed now or before an agent restart) go, once no sandbox of theirs is left. */
  private async tearDownRemovedPodVolumes(): Promise<void> {
    const roots = { root: this.o.volumeRoot, memoryRoot: this.o.memoryVolumeRoot };
    const gone = (await podsWithVolumes(roots)).filter((uid) => !this.desired.has(uid));
    if (gone.length === 0) return;
    const left = await this.call<{ items: Array<{ labels: Record<string, string> }> }>('runtime', 'ListPodSandbox', { filter: { labelSelector: { [managedLabel]: 'true' } } });
    const running = new Set(left.items.map((s) => s.labels[uidLabel]));
    for (const uid of gone.filter((u) => !running.has(u))) {
      try {
        await tearDownPodVolumes(uid, { ...roots, ...(this.o.asNodeRoot ? { asNodeRoot: this.o.asNodeRoot } : {}) });
        this.volumes.delete(uid);
        this.o.log.info('pod volumes removed', { uid });
      } catch (e: unknown) {
        this.o.log.warn('pod volumes could not be removed', { uid, error: (e as Error).message });
      }
    }
  }
}
