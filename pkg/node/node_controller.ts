import type { Logger } from '../log/logger.js';
import { type Json, type KubeApi, messageOf, microTime, rfc3339, statusOf, strategicMerge, timely } from './kube_api.js';
import { buildNode, type HostFacts, type NodeOptions } from './node_object.js';

// The node's registration, as kubelet's: the Node is created (or, when it
// exists, its labels and taints reconciled), its status patched — never
// replaced, so conditions other writers add survive — every
// statusUpdateMs when something changed and every statusReportMs anyway,
// and its Lease in kube-node-lease renewed every quarter of its duration.
// The node controller in kube-controller-manager marks the Node NotReady only
// when the Lease expires, so an API server outage does not touch the pods.
//
//   run(signal) ─ register ─┬─ every statusUpdateMs: status (patch if changed / report due)
//                           └─ every leaseDuration/4: lease renew (create when missing)

export const nodeLeaseNamespace = 'kube-node-lease';

export interface NodeControllerOptions {
  api: KubeApi;
  node: Omit<NodeOptions, 'runtimeReady'>;
  facts: () => Promise<HostFacts>;
  runtimeReady: () => Promise<{ ready: boolean; message: string }>;
  log: Logger;
  /** kubelet's nodeStatusUpdateFrequency (10 s) and nodeStatusReportFrequency (5 min). */
  statusUpdateMs?: number;
  statusReportMs?: number;
  /** kubelet's nodeLeaseDurationSeconds (40). */
  leaseDurationSeconds?: number;
  now?: () => Date;
}

type Condition = { type: string; status: string; reason: string; message: string; lastHeartbeatTime?: string; lastTransitionTime?: string };

/** Only what decides whether a status must be sent now: not the heartbeat. */
function statusKey(status: Json): string {
  const conditions = (status.conditions as Condition[]).map((c) => [c.type, c.status, c.reason]);
  return JSON.stringify({ ...status, conditions });
}

export class NodeController {
  private readonly statusUpdateMs: number;
  private readonly statusReportMs: number;
  private readonly leaseSeconds: number;
  private readonly now: () => Date;
  private nodeUid = '';
  private lastKey = '';
  private lastReport = 0;
  private transitions = new Map<string, { status: string; at: string }>();
  private lease: Json | undefined;
  private readonly readyResolve: () => void;
  /** Resolves once the Node exists in the API server. */
  readonly ready: Promise<void>;

  constructor(private readonly o: NodeControllerOptions) {
    this.statusUpdateMs = o.statusUpdateMs ?? 10000;
    this.statusReportMs = o.statusReportMs ?? 300000;
    this.leaseSeconds = o.leaseDurationSeconds ?? 40;
    this.now = o.now ?? (() => new Date());
    let resolve!: () => void;
    this.ready = new Promise<void>((r) => (resolve = r));
    this.readyResolve = resolve;
  }

  get name(): string {
    return this.o.node.name;
  }

  /** The Node's uid in the API server; empty before it is registered. */
  get uid(): string {
    return this.nodeUid;
  }

  /** Registers, then keeps status and lease fresh until the signal; API errors are logged and retried. */
  async run(signal: AbortSignal): Promise<void> {
    let delay = 500;
    while (!signal.aborted) {
      try {
        await this.register();
        break;
      } catch (e: unknown) {
        this.o.log.warn('cannot register the node; retrying', { node: this.name, error: messageOf(e), retryInMs: delay });
        await sleep(delay, signal);
        delay = Math.min(delay * 2, 7000);
      }
    }
    if (signal.aborted) return;
    this.readyResolve();
    await Promise.all([this.loop(signal, this.statusUpdateMs, () => this.updateStatus()), this.loop(signal, (this.leaseSeconds * 1000) / 4, () => this.renewLease())]);
  }

  private async loop(signal: AbortSignal, everyMs: number, f: () => Promise<void>): Promise<void> {
    while (!signal.aborted) {
      let wait = everyMs;
      try {
        // A renewal that hangs must not hold up the next one (kubelet's lease client times out too).
        await timely(f(), `node ${this.name}`, Math.max(everyMs, 5000));
      } catch (e: unknown) {
        this.o.log.warn('node status or lease update failed; retrying', { node: this.name, error: messageOf(e) });
        // kubelet retries a failed renewal quickly (200 ms doubling to 7 s), not at the next period.
        wait = Math.min(1000, everyMs);
      }
      await sleep(wait, signal);
    }
  }

  private async nodeObject(): Promise<Json> {
    const [facts, runtimeReady] = await Promise.all([this.o.facts(), this.o.runtimeReady()]);
    return buildNode(facts, { ...this.o.node, runtimeReady });
  }

  /**
   * node-role.kubernetes.io/* labels: NodeRestriction does not let a node set
   * them on itself (only an admin may), so they are not part of the
   * registration; they are tried once after it, and a refusal says what the
   * admin runs instead.
   */
  private async roleLabels(): Promise<void> {
    const roles = Object.fromEntries(Object.entries(this.o.node.labels).filter(([k]) => k.startsWith('node-role.kubernetes.io/')));
    if (Object.keys(roles).length === 0) return;
    try {
      await this.o.api.core.patchNode({ name: this.name, body: { metadata: { labels: roles } } }, strategicMerge());
    } catch (e: unknown) {
      const labels = Object.entries(roles).map(([k, v]) => `${k}=${v}`).join(' ');
      this.o.log.warn('the API server does not let the node set its role labels (NodeRestriction); a cluster admin can', { node: this.name, run: `kubectl label node ${this.name} ${labels}`, error: messageOf(e) });
    }
  }

  private async register(): Promise<void> {
    const node = await this.nodeObject();
    const md0 = node.metadata as { labels: Record<string, string> };
    md0.labels = Object.fromEntries(Object.entries(md0.labels).filter(([k]) => !k.startsWith('node-role.kubernetes.io/')));
    const status = this.stamp(node.status as Json);
    try {
      const created = (await this.o.api.core.createNode({ body: { ...node, status } })) as { metadata?: { uid?: string } };
      this.nodeUid = created.metadata?.uid ?? '';
      this.o.log.info('registered the node', { node: this.name, server: this.o.api.server });
    } catch (e: unknown) {
      if (statusOf(e) !== 409) throw e;
      // Registered before (an agent restart, or a node of the same name): ours now.
      const md = node.metadata as Json;
      const patched = (await this.o.api.core.patchNode({ name: this.name, body: { metadata: { labels: md.labels }, spec: node.spec } }, strategicMerge())) as {
        metadata?: { uid?: string };
      };
      this.nodeUid = patched.metadata?.uid ?? '';
      this.o.log.info('the node was registered before; labels and taints reconciled', { node: this.name });
    }
    // The status the create carried is dropped by the API server (status is a subresource).
    await this.sendStatus(node.status as Json);
    await this.roleLabels();
  }

  /** Heartbeat and transition times on the conditions: a transition time changes only with the status. */
  private stamp(status: Json): Json {
    const now = rfc3339(this.now());
    const conditions = (status.conditions as Condition[]).map((c) => {
      const last = this.transitions.get(c.type);
      const at = last && last.status === c.status ? last.at : now;
      this.transitions.set(c.type, { status: c.status, at });
      return { ...c, lastHeartbeatTime: now, lastTransitionTime: at };
    });
    return { ...status, conditions };
  }

  private async updateStatus(): Promise<void> {
    const status = (await this.nodeObject()).status as Json;
    const key = statusKey(status);
    if (key === this.lastKey && this.now().getTime() - this.lastReport < this.statusReportMs) return;
    await this.sendStatus(status);
  }

  private async sendStatus(status: Json): Promise<void> {
    const key = statusKey(status);
    await this.o.api.core.patchNodeStatus({ name: this.name, body: { status: this.stamp(status) } }, strategicMerge());
    if (key !== this.lastKey) this.o.log.info('node status sent', { node: this.name, ready: (status.conditions as Condition[]).find((c) => c.type === 'Ready')?.status ?? '' });
    this.lastKey = key;
    this.lastReport = this.now().getTime();
  }

  private leaseBody(resourceVersion?: string): Json {
    return {
      apiVersion: 'coordination.k8s.io/v1',
      kind: 'Lease',
      metadata: {
        name: this.name,
        namespace: nodeLeaseNamespace,
        ...(resourceVersion ? { resourceVersion } : {}),
        // Garbage-collected with the Node, as kubelet's lease is.
        ...(this.nodeUid ? { ownerReferences: [{ apiVersion: 'v1', kind: 'Node', name: this.name, uid: this.nodeUid }] } : {}),
      },
      spec: { holderIdentity: this.name, leaseDurationSeconds: this.leaseSeconds, renewTime: microTime(this.now()) },
    };
  }

  private async renewLease(): Promise<void> {
    const c = this.o.api.coordination;
    if (!this.lease) {
      try {
        this.lease = (await c.readNamespacedLease({ name: this.name, namespace: nodeLeaseNamespace })) as unknown as Json;
      } catch (e: unknown) {
        if (statusOf(e) !== 404) throw e;
        this.lease = (await c.createNamespacedLease({ namespace: nodeLeaseNamespace, body: this.leaseBody() as never })) as unknown as Json;
        this.o.log.info('created the node lease', { node: this.name, namespace: nodeLeaseNamespace });
        return;
      }
    }
    const rv = (this.lease.metadata as { resourceVersion?: string } | undefined)?.resourceVersion;
    try {
      this.lease = (await c.replaceNamespacedLease({ name: this.name, namespace: nodeLeaseNamespace, body: this.leaseBody(rv) as never })) as unknown as Json;
    } catch (e: unknown) {
      // Someone else wrote it (conflict) or it went away: read it again next time.
      this.lease = undefined;
      throw e;
    }
  }
}

function sleep(ms: number, signal: AbortSignal): Promise<void> {
  return new Promise((resolve) => {
    if (signal.aborted) return resolve();
    const t = setTimeout(done, ms);
    function done(): void {
      clearTimeout(t);
      signal.removeEventListener('abort', done);
      resolve();
    }
    signal.addEventListener('abort', done, { once: true });
  });
}
