import { type KubernetesListObject, type KubernetesObject, ListWatch, Watch } from '@kubernetes/client-node';

import type { Logger } from '../log/logger.js';
import { type Json, type KubeApi, messageOf, plain } from './kube_api.js';

// A list-and-watch of one kind, as the node half's informers: the pods the
// scheduler bound to this node (/api/v1/pods, fieldSelector
// spec.nodeName=<node>, the selector the Node authorizer expects of a
// kubelet) and the services for env vars. The client's ListWatch relists on
// 410 Gone by itself; any other end of the watch (the API server gone, a
// network error) is retried here with a back-off, from the last resource
// version, so a restarted API server is caught up with, not missed.
// The items of a LIST response carry no apiVersion and kind (kube-apiserver
// v1.34.4 and v1.37.2 alike; only watch events and single GETs have them), so the
// informer sets them from the list's own (PodList v1 → Pod v1): every object
// it hands on looks the same whether it came from a list or a watch event.

export interface InformerOptions<T extends KubernetesObject> {
  api: KubeApi;
  /** The collection, e.g. /api/v1/pods. */
  path: string;
  list: () => Promise<KubernetesListObject<T>>;
  fieldSelector?: string;
  /** What the log calls it when the watch ends. */
  what: string;
  log: Logger;
  /** Every change of the set, all objects as plain JSON (only after a whole list). */
  onChange?: (objects: Json[]) => void;
  /** Back-off after a failed list or watch (ms, by attempt); injectable for tests. */
  retryDelay?: (attempt: number) => number;
}

export class Informer<T extends KubernetesObject> {
  private lw: ListWatch<T> | undefined;
  private timer: NodeJS.Timeout | undefined;
  private failures = 0;
  private stopped = false;
  private synced = false;
  private readonly syncedResolve: () => void;
  /** Resolves after the first complete list. */
  readonly listed: Promise<void>;

  constructor(private readonly o: InformerOptions<T>) {
    let r!: () => void;
    this.listed = new Promise<void>((resolve) => (r = resolve));
    this.syncedResolve = r;
  }

  start(): void {
    const list = async (): Promise<KubernetesListObject<T>> => withItemTypes(await this.o.list());
    this.lw = new ListWatch<T>(this.o.path, new Watch(this.o.api.kc), list, false, undefined, this.o.fieldSelector);
    const changed = (): void => this.emit();
    this.lw.on('add', changed);
    this.lw.on('update', changed);
    this.lw.on('delete', changed);
    this.lw.on('error', (e: unknown) => {
      if (this.stopped) return;
      this.failures++;
      const delay = (this.o.retryDelay ?? ((n) => Math.min(500 * 2 ** (n - 1), 30000)))(this.failures);
      this.o.log.warn(`the ${this.o.what} watch ended; retrying`, { error: messageOf(e), retryInMs: delay });
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

  /** Has a whole list been seen (so an object missing from it is really gone)? */
  get hasSynced(): boolean {
    return this.synced;
  }

  private emit(): void {
    if (!this.lw || !this.synced) return;
    this.o.onChange?.(this.list());
  }

  /** The cached objects (of one namespace), as plain JSON. */
  list(namespace?: string): Json[] {
    return (this.lw?.list(namespace) ?? []).map((p) => plain(p));
  }

  async stop(): Promise<void> {
    this.stopped = true;
    clearTimeout(this.timer);
    await this.lw?.stop();
  }
}

/** The list with apiVersion and kind set on each item that lacks them, from the list's own (FooList → Foo). */
export function withItemTypes<T extends KubernetesObject>(l: KubernetesListObject<T>): KubernetesListObject<T> {
  const kind = l.kind?.endsWith('List') ? l.kind.slice(0, -'List'.length) : undefined;
  if (!kind || !l.apiVersion) return l;
  for (const item of l.items ?? []) {
    item.apiVersion ??= l.apiVersion;
    item.kind ??= kind;
  }
  return l;
}

/** The pods bound to this node. */
export function podInformer(o: { api: KubeApi; nodeName: string; log: Logger; onPods: (pods: Json[]) => void; retryDelay?: (attempt: number) => number }): Informer<KubernetesObject> {
  const fieldSelector = `spec.nodeName=${o.nodeName}`;
  return new Informer({
    api: o.api,
    path: '/api/v1/pods',
    list: () => o.api.core.listPodForAllNamespaces({ fieldSelector }),
    fieldSelector,
    what: 'pod',
    log: o.log,
    onChange: o.onPods,
    ...(o.retryDelay ? { retryDelay: o.retryDelay } : {}),
  });
}
