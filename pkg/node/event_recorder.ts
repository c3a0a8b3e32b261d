import type { Logger } from '../log/logger.js';
import { type KubeApi, messageOf, rfc3339, statusOf, strategicMerge } from './kube_api.js';

// core/v1 Events about the node's pods and the node itself, as kubelet's
// recorder posts them (source component kubelet, host the node): the same
// event again within ten minutes raises the count of the first instead of
// making another object; a bounded queue, so an API server outage costs
// events, never memory or a blocked pod worker.

export interface EventObject {
  kind: 'Pod' | 'Node';
  namespace: string;
  name: string;
  uid: string;
  /** spec.containers{name}, for a container's events. */
  fieldPath?: string;
}

const maxQueued = 1000;
const aggregateMs = 10 * 60 * 1000;

export class EventRecorder {
  private readonly queue: Array<() => Promise<void>> = [];
  private running = false;
  private readonly seen = new Map<string, { name: string; count: number; at: number }>();

  constructor(
    private readonly api: KubeApi,
    private readonly nodeName: string,
    private readonly log: Logger,
    private readonly now: () => Date = () => new Date(),
  ) {}

  record(o: EventObject, type: 'Normal' | 'Warning', reason: string, message: string): void {
    if (this.queue.length >= maxQueued) return;
    const at = this.now();
    this.queue.push(() => this.post(o, type, reason, message, at));
    if (!this.running) void this.run();
  }

  private async run(): Promise<void> {
    this.running = true;
    while (this.queue.length > 0) await this.queue.shift()!().catch((e: unknown) => this.log.debug('event not posted', { error: messageOf(e) }));
    this.running = false;
  }

  private async post(o: EventObject, type: string, reason: string, message: string, at: Date): Promise<void> {
    const namespace = o.kind === 'Node' ? 'default' : o.namespace;
    const key = `${o.uid}\0${o.fieldPath ?? ''}\0${type}\0${reason}\0${message}`;
    const last = this.seen.get(key);
    if (last && at.getTime() - last.at < aggregateMs) {
      last.count++;
      try {
        await this.api.core.patchNamespacedEvent({ name: last.name, namespace, body: { count: last.count, lastTimestamp: rfc3339(at) } }, strategicMerge());
        return;
      } catch (e: unknown) {
        if (statusOf(e) !== 404) throw e;
      }
    }
    // kubelet's name: the object's name and the time in hex nanoseconds.
    const name = `${o.name}.${(BigInt(at.getTime()) * 1000000n + BigInt(this.seen.size % 1000000)).toString(16)}`;
    await this.api.core.createNamespacedEvent({
      namespace,
      body: {
        metadata: { name, namespace },
        involvedObject: { kind: o.kind, apiVersion: 'v1', ...(o.kind === 'Pod' ? { namespace: o.namespace } : {}), name: o.name, uid: o.uid, ...(o.fieldPath ? { fieldPath: o.fieldPath } : {}) },
        reason,
        message,
        type,
        source: { component: 'kubelet', host: this.nodeName },
        reportingComponent: 'kubelet',
        reportingInstance: this.nodeName,
        firstTimestamp: rfc3339(at) as never,
        lastTimestamp: rfc3339(at) as never,
        count: 1,
      } as never,
    });
    if (this.seen.size > 4096) this.seen.clear();
    this.seen.set(key, { name, count: 1, at: at.getTime() });
  }
}
