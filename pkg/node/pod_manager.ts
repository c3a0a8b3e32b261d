import { join } from 'node:path';

import type { CriClients } from '../../proto/client.js';
import type { Logger } from '../log/logger.js';
import { containerEnv, expandCommand, type NodeAllocatable, type PodFields } from './pod_env.js';
import type { PodContainer, PodManifest } from './pod_manifest.js';
import { type ClusterObjects, type CriMount, podsWithVolumes, type PodVolumes, setUpPodVolumes, tearDownPodVolumes } from './pod_volumes.js';

// The node half's pod worker, as kubelet drives a CRI runtime: for every pod
// it should run, a sandbox and its containers through the CRI client on the
// runtime's socket (any CRI runtime would do), kept to the pod's restart
// policy with kubelet's back-off (10 s doubling to 5 min); pods it should no
// longer run are stopped and removed. Pods are found again by their labels
// after an agent restart, so healthy ones are not restarted.

export const managedLabel = 'usernode.io/managed-pod';
const uidLabel = 'io.kubernetes.pod.uid';
const containerNameLabel = 'io.kubernetes.container.name';
const backoffStartMs = 10000;
const backoffMaxMs = 300000;

interface ContainerState {
  /** Restarts so far (the next attempt number). */
  restarts: number;
  /** No restart before this time (back-off). */
  notBefore: number;
}

interface PodState {
  sandboxId: string;
  attempt: number;
  containers: Map<string, ContainerState>;
  failures: number;
  notBefore: number;
}

export interface PodManagerOptions {
  /** The node's name and address, for fieldRefs (spec.nodeName, status.hostIP). */
  nodeName?: string;
  hostIP?: string;
  cri: CriClients;
  log: Logger;
  /** Where each pod's container logs go (kubelet's /var/log/pods). */
  logRoot: string;
  syncMs?: number;
  now?: () => number;
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
}

type Callback<T> = (err: Error | null, res?: T) => void;

export class PodManager {
  private desired = new Map<string, PodManifest>();
  private readonly pods = new Map<string, PodState>();
  private timer: NodeJS.Timeout | undefined;
  private running: Promise<void> | undefined;
  private again = false;
  /** Nothing is synced (so nothing removed) before the first desired set is known. */
  private known = false;
  private readonly now: () => number;
  /** Set-up volumes by pod uid, and when their content is next refreshed. */
  private readonly volumes = new Map<string, { volumes: PodVolumes; refreshAt: number }>();

  constructor(private readonly o: PodManagerOptions) {
    this.now = o.now ?? Date.now;
  }

  private call<T>(service: 'runtime' | 'image', method: string, req: object): Promise<T> {
    const client = this.o.cri[service] as unknown as Record<string, (req: object, cb: Callback<T>) => void>;
    return new Promise<T>((resolve, reject) =>
      client[method]!.call(this.o.cri[service], req, (err, res) => (err ? reject(Object.assign(new Error(`${method}: ${err.message}`), { code: (err as { code?: number }).code })) : resolve(res as T))),
    );
  }

  /** The pods the node should run now; the difference is made by the next sync. */
  setDesired(pods: readonly PodManifest[]): void {
    this.desired = new Map(pods.map((p) => [p.uid, p]));
    this.known = true;
    this.kick();
  }

  start(): void {
    this.timer = setInterval(() => this.kick(), this.o.syncMs ?? 2000);
    this.timer.unref();
    this.kick();
  }

  /** Stops syncing; the pods keep running (as kubelet's do when kubelet stops). */
  async stop(): Promise<void> {
    clearInterval(this.timer);
    await this.running;
  }

  private kick(): void {
    if (!this.known) return;
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

  private async sync(): Promise<void> {
    // Managed sandboxes: one of a desired pod not known yet (made before an
    // agent restart) is adopted, not restarted; any other goes.
    const listed = await this.call<{ items: Array<{ id: string; state: string; metadata: { attempt: number }; labels: Record<string, string> }> }>('runtime', 'ListPodSandbox', {
      filter: { labelSelector: { [managedLabel]: 'true' } },
    });
    // A ready sandbox first: of two of one pod, the ready one is kept.
    for (const s of [...listed.items].sort((a, b) => Number(b.state === 'SANDBOX_READY') - Number(a.state === 'SANDBOX_READY'))) {
      const uid = s.labels[uidLabel];
      if (uid && this.desired.has(uid)) {
        const known = this.pods.get(uid);
        if (!known) {
          this.pods.set(uid, { sandboxId: s.id, attempt: s.metadata.attempt, containers: new Map(), failures: 0, notBefore: 0 });
          continue;
        }
        if (known.sandboxId === s.id) continue;
      }
      await this.remove(s.id, uid);
    }
    await this.tearDownRemovedPodVolumes();
    for (const [uid, pod] of this.desired) {
      try {
        await this.syncPod(pod);
      } catch (e: unknown) {
        const st = this.pods.get(uid);
        if (st) {
          st.failures++;
          st.notBefore = this.now() + Math.min(backoffStartMs * 2 ** (st.failures - 1), backoffMaxMs);
        }
        this.o.log.warn('pod could not be started; retrying with back-off', { pod: `${pod.namespace}/${pod.name}`, error: (e as Error).message });
      }
    }
  }

  private async remove(sandboxId: string, uid: string | undefined): Promise<void> {
    await this.call('runtime', 'StopPodSandbox', { podSandboxId: sandboxId });
    await this.call('runtime', 'RemovePodSandbox', { podSandboxId: sandboxId });
    if (uid && this.pods.get(uid)?.sandboxId === sandboxId) this.pods.delete(uid);
    this.o.log.info('pod removed', { sandbox: sandboxId.slice(0, 12), uid: uid ?? '' });
  }

  private sandboxConfig(pod: PodManifest, attempt: number): object {
    const ports = pod.containers.flatMap((c) => c.ports.filter((p) => p.hostPort !== undefined));
    return {
      metadata: { name: pod.name, namespace: pod.namespace, uid: pod.uid, attempt },
      hostname: pod.hostname ?? pod.name,
      logDirectory: join(this.o.logRoot, `${pod.namespace}_${pod.name}_${pod.uid}`),
      portMappings: ports.map((p) => ({ protocol: p.protocol, containerPort: p.containerPort, hostPort: p.hostPort, hostIp: p.hostIP ?? '' })),
      labels: { ...pod.labels, 'io.kubernetes.pod.name': pod.name, 'io.kubernetes.pod.namespace': pod.namespace, [uidLabel]: pod.uid, [managedLabel]: 'true' },
      annotations: pod.annotations,
      linux: { securityContext: { namespaceOptions: { network: pod.hostNetwork ? 'NODE' : 'POD', pid: 'CONTAINER', ipc: 'POD' } } },
    };
  }

  private async syncPod(pod: PodManifest): Promise<void> {
    let st = this.pods.get(pod.uid);
    if (st && this.now() < st.notBefore) return;
    type SandboxStatus = { status?: { state: string; network?: { ip: string } } };
    let status: SandboxStatus | undefined;
    if (st) {
      status = await this.call<SandboxStatus>('runtime', 'PodSandboxStatus', { podSandboxId: st.sandboxId }).catch(() => undefined);
      if (status?.status?.state !== 'SANDBOX_READY') {
        // Gone or not ready (its network lost): a new sandbox, the next attempt, as kubelet does.
        await this.remove(st.sandboxId, pod.uid).catch(() => undefined);
        st = { sandboxId: '', attempt: st.attempt + 1, containers: new Map(), failures: st.failures, notBefore: 0 };
        status = undefined;
      }
    }
    // Volumes before the sandbox, as kubelet mounts them before it: a pod whose volumes fail does not start.
    const volumes = await this.podVolumes(pod);
    const sandboxConfig = this.sandboxConfig(pod, st?.attempt ?? 0);
    if (!st || st.sandboxId === '') {
      const attempt = st?.attempt ?? 0;
      const r = await this.call<{ podSandboxId: string }>('runtime', 'RunPodSandbox', { config: sandboxConfig });
      st = { sandboxId: r.podSandboxId, attempt, containers: new Map(), failures: st?.failures ?? 0, notBefore: 0 };
      this.pods.set(pod.uid, st);
      this.o.log.info('pod started', { pod: `${pod.namespace}/${pod.name}`, sandbox: r.podSandboxId.slice(0, 12) });
    }
    const sandboxId = st.sandboxId;
    // The pod's fields for env fieldRefs, asked for only when a container is made.
    let fields: PodFields | undefined;
    const podFields = async (): Promise<PodFields> => {
      status ??= await this.call<SandboxStatus>('runtime', 'PodSandboxStatus', { podSandboxId: sandboxId });
      // A pod on the node's network has the node's address (kubelet).
      const podIP = pod.hostNetwork ? (this.o.hostIP ?? '') : (status.status?.network?.ip ?? '');
      return (fields ??= { podIP, podIPs: podIP ? [podIP] : [], hostIP: this.o.hostIP ?? '', nodeName: this.o.nodeName ?? '' });
    };
    const list = await this.call<{ containers: Array<{ id: string; state: string; metadata: { name: string; attempt: number }; labels: Record<string, string> }> }>('runtime', 'ListContainers', {
      filter: { podSandboxId: st.sandboxId },
    });
    for (const c of pod.containers) {
      const mine = list.containers.filter((x) => x.labels[containerNameLabel] === c.name).sort((a, b) => b.metadata.attempt - a.metadata.attempt);
      const latest = mine[0];
      const cs = st.containers.get(c.name) ?? { restarts: latest ? latest.metadata.attempt : 0, notBefore: 0 };
      st.containers.set(c.name, cs);
      if (latest?.state === 'CONTAINER_RUNNING') continue;
      if (latest?.state === 'CONTAINER_CREATED') {
        await this.call('runtime', 'StartContainer', { containerId: latest.id });
        continue;
      }
      let attempt = 0;
      if (latest) {
        // Exited: by the restart policy, after the back-off.
        const status = await this.call<{ status: { exitCode: number; startedAt: string; finishedAt: string } }>('runtime', 'ContainerStatus', { containerId: latest.id });
        const failed = status.status.exitCode !== 0;
        if (pod.restartPolicy === 'Never' || (pod.restartPolicy === 'OnFailure' && !failed)) continue;
        if (this.now() < cs.notBefore) continue;
        // A container that ran ten minutes starts its back-off afresh (kubelet).
        const ranMs = Number((BigInt(status.status.finishedAt) - BigInt(status.status.startedAt)) / 1000000n);
        const restartsCounted = ranMs > 600000 ? 0 : cs.restarts;
        cs.notBefore = this.now() + Math.min(backoffStartMs * 2 ** restartsCounted, backoffMaxMs);
        for (const old of mine.slice(1)) await this.call('runtime', 'RemoveContainer', { containerId: old.id });
        attempt = latest.metadata.attempt + 1;
        cs.restarts = attempt;
        this.o.log.info('restarting container', { pod: `${pod.namespace}/${pod.name}`, container: c.name, exitCode: status.status.exitCode, attempt });
      }
      await this.ensureImage(c.image, c.imagePullPolicy, sandboxConfig);
      const f = c.env.some((e) => e.valueFrom?.kind === 'fieldRef') ? await podFields() : { podIP: '', podIPs: [], hostIP: this.o.hostIP ?? '', nodeName: this.o.nodeName ?? '' };
      const made = await this.containerSettings(pod, c, volumes, f);
      const created = await this.call<{ containerId: string }>('runtime', 'CreateContainer', {
        podSandboxId: st.sandboxId,
        config: {
          metadata: { name: c.name, attempt },
          image: { image: c.image },
          command: made.command,
          args: made.args,
          // KeyValue.value is bytes in CRI v1.37.
          envs: made.envs.map((e) => ({ key: e.key, value: Buffer.from(e.value) })),
          mounts: made.mounts,
          workingDir: c.workingDir ?? '',
          logPath: `${c.name}/${attempt}.log`,
          labels: { [containerNameLabel]: c.name, [uidLabel]: pod.uid },
          linux: {},
        },
        sandboxConfig,
      });
      await this.call('runtime', 'StartContainer', { containerId: created.containerId });
    }
    st.failures = 0;
  }

  private async ensureImage(image: string, policy: 'Always' | 'IfNotPresent' | 'Never', sandboxConfig: object): Promise<void> {
    const have = await this.call<{ image?: { id: string } | null }>('image', 'ImageStatus', { image: { image } });
    if (have.image && policy !== 'Always') return;
    if (!have.image && policy === 'Never') throw new Error(`image ${image} is not on the node and imagePullPolicy is Never (ErrImageNeverPull)`);
    await this.call('image', 'PullImage', { image: { image }, sandboxConfig });
  }

  /** The pod's volumes, set up before its sandbox, their content refreshed at most every volumeSyncMs. */
  private async podVolumes(pod: PodManifest): Promise<PodVolumes> {
    const have = this.volumes.get(pod.uid);
    if (have && this.now() < have.refreshAt) return have.volumes;
    const refreshAt = this.now() + (this.o.volumeSyncMs ?? 10000);
    try {
      const volumes = await setUpPodVolumes(pod, {
        root: this.o.volumeRoot,
        memoryRoot: this.o.memoryVolumeRoot,
        uid: this.o.uid ?? process.getuid?.() ?? 0,
        now: this.now,
        ...(this.o.cluster ? { cluster: this.o.cluster } : {}),
        ...(this.o.allocatable ? { allocatable: this.o.allocatable } : {}),
      });
      if (!have) for (const note of volumes.notes) this.o.log.warn('not enforced rootless', { pod: `${pod.namespace}/${pod.name}`, note });
      this.volumes.set(pod.uid, { volumes, refreshAt });
      return volumes;
    } catch (e: unknown) {
      // A running pod keeps what it has (kubelet keeps the last content too); one not started yet does not start.
      if (have) {
        this.o.log.warn('pod volumes could not be refreshed; the pod keeps their last content', { pod: `${pod.namespace}/${pod.name}`, error: (e as Error).message });
        have.refreshAt = refreshAt;
        return have.volumes;
      }
      throw Object.assign(new Error(`volumes cannot be set up: ${(e as Error).message}`), { reason: 'FailedMount', cause: e });
    }
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
