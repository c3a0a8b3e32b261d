import type { Logger } from '../log/logger.js';
import { type Json, type KubeApi, messageOf, statusOf, strategicMerge, timely } from './kube_api.js';

// Pod statuses to the API server, through the status subresource, as
// kubelet's status manager: the newest status of each pod is kept until it
// is written, so an API server that is away only delays the writes (the
// pods run on); a pod's write carries its uid, so a status never lands on a
// new pod of the same name; a pod gone from the API server is forgotten.

export interface PodRef {
  namespace: string;
  name: string;
  /** The API object's uid (a mirror pod's own, not its static pod's). */
  uid: string;
}

export class PodStatusWriter {
  private readonly pending = new Map<string, { ref: PodRef; status: Json }>();
  private readonly written = new Map<string, string>();
  private timer: NodeJS.Timeout | undefined;
  private running: Promise<void> | undefined;
  private failures = 0;

  constructor(
    private readonly api: KubeApi,
    private readonly log: Logger,
    private readonly retryMs = (n: number): number => Math.min(500 * 2 ** (n - 1), 10000),
  ) {}

  /** The pod's status is now this; written soon, unless it is what the API server has. */
  set(ref: PodRef, status: Json): void {
    const text = JSON.stringify(status);
    if (this.written.get(ref.uid) === text) {
      this.pending.delete(ref.uid);
      return;
    }
    this.pending.set(ref.uid, { ref, status });
    this.soon(0);
  }

  /** The pod is gone from the API server: nothing more to write for it. */
  forget(uid: string): void {
    this.pending.delete(uid);
    this.written.delete(uid);
  }

  private soon(ms: number): void {
    if (this.timer || this.running) return;
    this.timer = setTimeout(() => {
      this.timer = undefined;
      this.running = this.flush().finally(() => {
        this.running = undefined;
        if (this.pending.size > 0) this.soon(this.failures > 0 ? this.retryMs(this.failures) : 0);
      });
    }, ms);
    this.timer.unref();
  }

  private async flush(): Promise<void> {
    for (const [uid, { ref, status }] of [...this.pending]) {
      try {
        await timely(this.api.core.patchNamespacedPodStatus({ name: ref.name, namespace: ref.namespace, body: { metadata: { uid }, status } }, strategicMerge()), `the status of pod ${ref.namespace}/${ref.name}`);
        this.failures = 0;
        if (this.pending.get(uid)?.status === status) this.pending.delete(uid);
        this.written.set(uid, JSON.stringify(status));
      } catch (e: unknown) {
        const code = statusOf(e);
        if (code === 404 || code === 409) {
          // Deleted, or a new pod of that name (the uid no longer matches): not ours to write.
          this.forget(uid);
          continue;
        }
        if (code === 422) {
          // Refused as invalid: retrying the same would fail the same; the next status is tried.
          this.log.error('the API server refused a pod status', { pod: `${ref.namespace}/${ref.name}`, error: messageOf(e) });
          this.pending.delete(uid);
          continue;
        }
        this.failures++;
        this.log.warn('cannot write a pod status; it is kept and retried', { pod: `${ref.namespace}/${ref.name}`, error: messageOf(e) });
        return;
      }
    }
  }

  /** Waits for the writes queued now (tests, shutdown). */
  async drain(timeoutMs = 5000): Promise<void> {
    const end = Date.now() + timeoutMs;
    while ((this.pending.size > 0 || this.running || this.timer) && Date.now() < end) await new Promise((r) => setTimeout(r, 50));
  }
}
