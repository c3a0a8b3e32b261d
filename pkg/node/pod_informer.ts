import { ListWatch, type V1Pod, Watch } from '@kubernetes/client-node';

import type { Logger } from '../log/logger.js';
import { type Json, type KubeApi, messageOf, plain } from './kube_api.js';

// The pods the scheduler bound to this node: a list-and-watch of
// /api/v1/pods with fieldSelector spec.nodeName=<node> (the selector the
// Node authorizer expects of a kubelet). The client's ListWatch relists on
// 410 Gone by itself; any other end of the watch (the API server gone, a
// network error) is retried here with a back-off, from the last resource
// version, so a restarted API server is caught up with, not missed.

export interface PodInformerOptions {
  api: KubeApi;
  nodeName: string;
  log: Logger;
  /** Every change of the set: all pods bound to the node, as plain JSON. */
  onPods: (pods: Json[]) => void;
  /** Back-off after a failed list or watch (ms, by attempt); injectable for tests. */
  retryDelay?: (attempt: number) => number;
}

export class PodInformer {
  private lw: ListWatch<V1Pod> | undefined;
  private timer: NodeJS.Timeout | undefined;
  private failures = 0;
  private stopped = false;
  private synced = false;
  private readonly syncedResolve: () => void;
  /** Resolves after the first complete list. */
  readonly listed: Promise<void>;

  constructor(private readonly o: PodInformerOptions) {
    let r!: () => void;
    this.listed = new Promise<void>((resolve) => (r = resolve));
    this.syncedResolve = r;
  }

  start(): void {
    const fieldSelector = `spec.nodeName=${this.o.nodeName}`;
    const list = () => this.o.api.core.listPodForAllNamespaces({ fieldSelector });
    this.lw = new ListWatch<V1Pod>('/api/v1/pods', new Watch(this.o.api.kc), list, false, undefined, fieldSelector);
    const changed = (): void => this.emit();
    this.lw.on('add', changed);
    this.lw.on('update', changed);
    this.lw.on('delete', changed);
    this.lw.on('error', (e: unknown) => {
      if (this.stopped) return;
      this.failures++;
      const delay = (this.o.retryDelay ?? ((n) => Math.min(500 * 2 ** (n - 1), 30000)))(this.failures);
      this.o.log.warn('the pod watch ended; retrying', { error: messageOf(e), retryInMs: delay });
      clearTimeout(this.timer);
      this.timer = setTimeout(() => void this.startOnce(), delay);
      this.timer.unref();
    });
    void this.startOnce();
  }

  /** One list (unless a watch can resume) and watch; failures come back through the error callback. */
  private async startOnce(): Promise<void> {
    await this.lw?.start().catch(() => undefined);
    // The client reports a failed list through the error callback and resolves anyway: a resource version says the list came.
    if (this.lw && this.lw.latestResourceVersion() !== '') {
      this.failures = 0;
      if (!this.synced) {
        this.synced = true;
        this.syncedResolve();
      }
      this.emit();
    }
  }

  /** Has a whole list been seen (so a pod missing from it is really gone)? */
  get hasSynced(): boolean {
    return this.synced;
  }

  private emit(): void {
    if (!this.lw || !this.synced) return;
    this.o.onPods(this.lw.list().map((p) => plain(p)));
  }

  /** The cached pod, if the node has it. */
  get(namespace: string, name: string): Json | undefined {
    const p = this.lw?.get(name, namespace);
    return p ? plain(p) : undefined;
  }

  async stop(): Promise<void> {
    this.stopped = true;
    clearTimeout(this.timer);
    await this.lw?.stop();
  }
}
