import type { Logger } from '../log/logger.js';
import type { EventRecorder } from './event_recorder.js';
import { type Json, type KubeApi, messageOf, rfc3339, statusOf } from './kube_api.js';
import type { PodStatusWriter } from './pod_status_writer.js';
import { podFromObject, type PodManifest } from './pod_manifest.js';

// kubelet's pod config: the pods of every source (the static pod folder and
// the API server) merged into the one set the pod worker runs, and what
// comes back from the worker (statuses, events, terminations) routed to the
// API object each pod has there:
//   API pod     → itself (status subresource, events, the final delete);
//   static pod  → its mirror pod, which this file keeps in step: made when
//                 the static pod appears, remade when it changes, deleted
//                 when it goes.
// Static pods are named <name>-<node> as kubelet names them, so the mirror
// pod, `kubectl logs` and the CRI sandbox all agree on the name.
// Nothing is removed by the worker until every source has been seen whole
// (kubelet's "sources ready"): right after an agent restart an API pod not
// listed yet is not a pod to delete.

export const mirrorAnnotation = 'kubernetes.io/config.mirror';
const sourceAnnotation = 'kubernetes.io/config.source';
const hashAnnotation = 'kubernetes.io/config.hash';

export interface PodWorker {
  setDesired(pods: readonly PodManifest[], complete?: boolean): void;
}

export interface ClusterSide {
  api: KubeApi;
  statuses: PodStatusWriter;
  events: EventRecorder;
  /** The Node's uid (the mirror pods' owner); empty until registered. */
  nodeUid: () => string;
}

type Origin = { kind: 'static'; pod: PodManifest } | { kind: 'api'; pod: PodManifest; object: Json };

export class PodConfig {
  private staticPods: PodManifest[] | undefined;
  private apiObjects: Json[] | undefined;
  private readonly origins = new Map<string, Origin>();
  /** Mirror pods the API server has, by their static pod's uid. */
  private mirrors = new Map<string, { name: string; namespace: string; uid: string }>();
  /** The last status of each static pod, written again once its mirror pod exists. */
  private readonly staticStatus = new Map<string, Json>();
  /** API pods refused, by uid and resource version: told once. */
  private readonly refused = new Set<string>();
  private apiUids = new Set<string>();
  /** Every pod's newest status from the worker (the kubelet API's /pods). */
  private readonly lastStatus = new Map<string, Json>();
  private mirrorSync: Promise<void> | undefined;
  private deletingMirrors: Array<{ name: string; namespace: string; uid: string }> = [];
  private mirrorAgain = false;

  constructor(
    private readonly o: { nodeName: string; log: Logger; worker: PodWorker; cluster?: ClusterSide },
  ) {}

  setStatic(pods: readonly PodManifest[]): void {
    this.staticPods = pods.map((p) => ({
      ...p,
      name: `${p.name}-${this.o.nodeName}`,
      annotations: { ...p.annotations, [sourceAnnotation]: 'file', [hashAnnotation]: p.uid },
    }));
    this.update();
  }

  setApi(objects: readonly Json[]): void {
    this.apiObjects = [...objects];
    this.update();
  }

  /** Again from what is known (the Node just registered: mirror pods can be owned now). */
  refresh(): void {
    this.update();
  }

  private update(): void {
    const wantApi = this.o.cluster !== undefined;
    const pods: PodManifest[] = [];
    this.origins.clear();
    for (const p of this.staticPods ?? []) {
      pods.push(p);
      this.origins.set(p.uid, { kind: 'static', pod: p });
    }
    const mirrors = new Map<string, { name: string; namespace: string; uid: string }>();
    const deleting: Array<{ name: string; namespace: string; uid: string }> = [];
    for (const obj of this.apiObjects ?? []) {
      const md = (obj.metadata ?? {}) as { name?: string; namespace?: string; uid?: string; resourceVersion?: string; annotations?: Record<string, string> };
      const mirrorOf = md.annotations?.[mirrorAnnotation];
      if (mirrorOf !== undefined) {
        // A mirror pod someone deleted is finished off and made anew (kubelet's): no worker stops it, so it would stay Terminating.
        if ((obj.metadata as { deletionTimestamp?: string }).deletionTimestamp) deleting.push({ name: md.name ?? '', namespace: md.namespace ?? '', uid: md.uid ?? '' });
        else mirrors.set(mirrorOf, { name: md.name ?? '', namespace: md.namespace ?? '', uid: md.uid ?? '' });
        continue;
      }
      try {
        const pod = podFromObject(obj, `api:${md.namespace}/${md.name}`, '', { fromApi: true });
        pods.push(pod);
        this.origins.set(pod.uid, { kind: 'api', pod, object: obj });
      } catch (e: unknown) {
        this.refuse(obj, e as Error & { field?: string });
      }
    }
    this.mirrors = mirrors;
    this.deletingMirrors = deleting;
    const apiUids = new Set((this.apiObjects ?? []).map((o) => (o.metadata as { uid?: string } | undefined)?.uid ?? ''));
    for (const uid of this.apiUids) if (!apiUids.has(uid)) this.o.cluster?.statuses.forget(uid);
    this.apiUids = apiUids;
    const complete = this.staticPods !== undefined && (!wantApi || this.apiObjects !== undefined);
    this.o.worker.setDesired(pods, complete);
    for (const uid of [...this.staticStatus.keys()]) if (!this.origins.has(uid)) this.staticStatus.delete(uid);
    for (const uid of [...this.lastStatus.keys()]) if (!this.origins.has(uid)) this.lastStatus.delete(uid);
    if (this.o.cluster && this.apiObjects !== undefined) {
      this.syncMirrors();
      // A static pod's status waits for its mirror pod; written when that appears (the writer skips repeats).
      for (const [uid, status] of this.staticStatus) {
        const ref = this.mirrors.get(uid);
        if (ref) this.o.cluster.statuses.set(ref, status);
      }
    }
  }

  /** A pod this node cannot run: Failed, with the reason in its status and an event (kubelet's admission failure). */
  private refuse(obj: Json, e: Error & { field?: string }): void {
    const md = obj.metadata as { name: string; namespace: string; uid: string; resourceVersion?: string };
    const phase = (obj.status as { phase?: string } | undefined)?.phase;
    if (phase === 'Failed' || this.refused.has(`${md.uid}/${md.resourceVersion}`)) return;
    this.refused.add(`${md.uid}/${md.resourceVersion}`);
    const message = `this node cannot run the pod: ${e.field ? `${e.field} ` : ''}${e.message}`;
    this.o.log.warn('pod refused', { pod: `${md.namespace}/${md.name}`, error: message });
    if (!this.o.cluster) return;
    this.o.cluster.events.record({ kind: 'Pod', namespace: md.namespace, name: md.name, uid: md.uid }, 'Warning', 'UnsupportedPodSpec', message);
    this.o.cluster.statuses.set(md, { phase: 'Failed', reason: 'UnsupportedPodSpec', message });
  }

  /** The API object a pod of the worker reports to (undefined: none yet, or no API server). */
  private refOf(pod: PodManifest): { namespace: string; name: string; uid: string } | undefined {
    const origin = this.origins.get(pod.uid);
    if (!origin) return undefined;
    if (origin.kind === 'api') return { namespace: pod.namespace, name: pod.name, uid: pod.uid };
    return this.mirrors.get(pod.uid);
  }

  /** The pods the node runs as v1 Pods with their newest status, as kubelet's /pods serves them. */
  pods(): Json[] {
    return [...this.origins.values()].map((o) => {
      const status = this.lastStatus.get(o.pod.uid) ?? { phase: 'Pending' };
      if (o.kind === 'api') return { ...o.object, status };
      const raw = o.pod.raw as { spec?: Json };
      return {
        apiVersion: 'v1',
        kind: 'Pod',
        metadata: { name: o.pod.name, namespace: o.pod.namespace, uid: o.pod.uid, labels: o.pod.labels, annotations: o.pod.annotations },
        spec: { ...raw.spec, nodeName: this.o.nodeName },
        status,
      };
    });
  }

  // --- from the worker -------------------------------------------------------

  onStatus(pod: PodManifest, status: Json): void {
    this.lastStatus.set(pod.uid, status);
    if (!this.o.cluster) return;
    if (this.origins.get(pod.uid)?.kind === 'static') this.staticStatus.set(pod.uid, status);
    const ref = this.refOf(pod);
    if (ref) this.o.cluster.statuses.set(ref, status);
  }

  onEvent(pod: PodManifest, e: { type: 'Normal' | 'Warning'; reason: string; message: string; container?: string }): void {
    const ref = this.refOf(pod) ?? { namespace: pod.namespace, name: pod.name, uid: pod.uid };
    this.o.cluster?.events.record({ kind: 'Pod', ...ref, ...(e.container ? { fieldPath: `spec.containers{${e.container}}` } : {}) }, e.type, e.reason, e.message);
  }

  /** The worker has stopped a deleted pod: the API object goes now (grace 0, only if it is still this pod). */
  async onTerminated(pod: PodManifest): Promise<void> {
    const origin = this.origins.get(pod.uid);
    if (!this.o.cluster || origin?.kind !== 'api') return;
    try {
      await this.o.cluster.api.core.deleteNamespacedPod({ name: pod.name, namespace: pod.namespace, gracePeriodSeconds: 0, body: { gracePeriodSeconds: 0, preconditions: { uid: pod.uid } } });
      this.o.log.info('pod deleted after it stopped', { pod: `${pod.namespace}/${pod.name}` });
    } catch (e: unknown) {
      if (statusOf(e) !== 404 && statusOf(e) !== 409) this.o.log.warn('cannot delete a stopped pod; the next sync tries again', { pod: `${pod.namespace}/${pod.name}`, error: messageOf(e) });
    }
  }

  // --- mirror pods ------------------------------------------------------------

  private syncMirrors(): void {
    if (this.mirrorSync) {
      this.mirrorAgain = true;
      return;
    }
    this.mirrorSync = (async () => {
      do {
        this.mirrorAgain = false;
        await this.reconcileMirrors().catch((e: unknown) => this.o.log.warn('mirror pods not in step; retrying on the next change', { error: messageOf(e) }));
      } while (this.mirrorAgain);
    })().finally(() => (this.mirrorSync = undefined));
  }

  private async reconcileMirrors(): Promise<void> {
    const c = this.o.cluster!;
    const wanted = new Map((this.staticPods ?? []).map((p) => [p.uid, p]));
    for (const [hash, m] of [...this.mirrors, ...this.deletingMirrors.map((d) => ['', d] as const)]) {
      if (hash !== '' && wanted.has(hash)) continue;
      // Its static pod is gone or changed: the mirror goes (a changed one is made anew below).
      await c.api.core.deleteNamespacedPod({ name: m.name, namespace: m.namespace, gracePeriodSeconds: 0, body: { gracePeriodSeconds: 0, preconditions: { uid: m.uid } } }).catch((e: unknown) => {
        if (statusOf(e) !== 404 && statusOf(e) !== 409) throw e;
      });
      this.o.log.info('mirror pod deleted', { pod: `${m.namespace}/${m.name}` });
    }
    const nodeUid = c.nodeUid();
    if (!nodeUid) return;
    for (const [uid, p] of wanted) {
      if (this.mirrors.has(uid)) continue;
      const raw = p.raw as { metadata?: Json; spec?: Json };
      try {
        await c.api.core.createNamespacedPod({
          namespace: p.namespace,
          body: {
            apiVersion: 'v1',
            kind: 'Pod',
            metadata: {
              name: p.name,
              namespace: p.namespace,
              labels: p.labels,
              annotations: { ...p.annotations, [mirrorAnnotation]: uid, 'kubernetes.io/config.seen': rfc3339(new Date()) },
              ownerReferences: [{ apiVersion: 'v1', kind: 'Node', name: this.o.nodeName, uid: nodeUid, controller: true }],
            },
            spec: { ...raw.spec, nodeName: this.o.nodeName },
          } as never,
        });
        this.o.log.info('mirror pod created', { pod: `${p.namespace}/${p.name}` });
      } catch (e: unknown) {
        // 409: an old mirror of that name is still going; its deletion is a change, and the next pass makes this one.
        if (statusOf(e) !== 409) throw e;
      }
    }
  }
}
