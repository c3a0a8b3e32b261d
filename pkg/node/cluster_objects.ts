import { ListWatch, type V1Service, Watch } from '@kubernetes/client-node';

import { type KubeApi, plain, statusOf, timely } from './kube_api.js';
import type { ServiceInfo } from './pod_env.js';

// What a pod's volumes and env read from the API server, with the node's own
// credentials: the Node authorizer lets a node read only the ConfigMaps and
// Secrets of pods bound to it, and ask tokens only for their service
// accounts, bound to the pod (so the token dies with the pod).

export interface ApiClusterObjects {
  configMap(namespace: string, name: string): Promise<{ data: Record<string, string>; binaryData: Record<string, Buffer> } | undefined>;
  secret(namespace: string, name: string): Promise<{ data: Record<string, Buffer> } | undefined>;
  serviceAccountToken(namespace: string, serviceAccount: string, r: { audiences: string[]; expirationSeconds: number; podName: string; podUid: string }): Promise<{ token: string; expiresAt: Date }>;
  services(namespace: string): Promise<ServiceInfo[]>;
  /** Ends the service watch. */
  close(): Promise<void>;
}

const orUndefined = <T>(p: Promise<T>, what: string): Promise<T | undefined> => timely(p, what).catch((e: unknown) => (statusOf(e) === 404 ? undefined : Promise.reject(e)));

const decode = (m: Record<string, string> | undefined): Record<string, Buffer> => Object.fromEntries(Object.entries(m ?? {}).map(([k, v]) => [k, Buffer.from(v, 'base64')]));

export function clusterObjects(api: KubeApi): ApiClusterObjects {
  // Services by a list-and-watch started on first use, as kubelet's service
  // informer: a service made a moment before a pod is in that pod's env.
  let services: { lw: ListWatch<V1Service>; listed: Promise<void> } | undefined;
  let closed = false;
  const watchServices = (): { lw: ListWatch<V1Service>; listed: Promise<void> } => {
    if (services) return services;
    const lw = new ListWatch<V1Service>('/api/v1/services', new Watch(api.kc), () => api.core.listServiceForAllNamespaces({}), false);
    let failures = 0;
    lw.on('error', () => {
      if (closed) return;
      // Resumed from the last resource version after a back-off; a 410 relists (the client's own rule).
      const t = setTimeout(() => void lw.start().catch(() => undefined), Math.min(500 * 2 ** failures++, 30000));
      t.unref();
    });
    lw.on('connect', () => (failures = 0));
    services = { lw, listed: lw.start() };
    return services;
  };
  const serviceInfo = (o: V1Service): ServiceInfo => {
    const s = plain<{ metadata: { namespace: string; name: string }; spec?: { clusterIP?: string; ports?: Array<{ name?: string; port: number; protocol?: string }> } }>(o);
    return {
      namespace: s.metadata.namespace,
      name: s.metadata.name,
      clusterIP: s.spec?.clusterIP ?? '',
      ports: (s.spec?.ports ?? []).map((p) => ({ name: p.name ?? '', port: p.port, protocol: p.protocol ?? 'TCP' })),
    };
  };
  return {
    async close() {
      closed = true;
      await services?.lw.stop();
    },
    async services(namespace) {
      const w = watchServices();
      await timely(w.listed, 'the service list');
      // kubelet's own words: a container is not made with half its environment.
      if (w.lw.latestResourceVersion() === '') throw new Error('services have not yet been read at least once, cannot construct envvars');
      return [...w.lw.list(namespace), ...(namespace === 'default' ? [] : w.lw.list('default').filter((x) => x.metadata?.name === 'kubernetes'))].map(serviceInfo);
    },
    async configMap(namespace, name) {
      const cm = await orUndefined(api.core.readNamespacedConfigMap({ name, namespace }), `configmap ${namespace}/${name}`);
      if (!cm) return undefined;
      const o = plain<{ data?: Record<string, string>; binaryData?: Record<string, string> }>(cm);
      return { data: o.data ?? {}, binaryData: decode(o.binaryData) };
    },
    async secret(namespace, name) {
      const s = await orUndefined(api.core.readNamespacedSecret({ name, namespace }), `secret ${namespace}/${name}`);
      if (!s) return undefined;
      return { data: decode(plain<{ data?: Record<string, string> }>(s).data) };
    },
    async serviceAccountToken(namespace, serviceAccount, r) {
      const tr = await timely(api.core.createNamespacedServiceAccountToken({
        name: serviceAccount,
        namespace,
        body: {
          spec: {
            audiences: r.audiences,
            expirationSeconds: r.expirationSeconds,
            boundObjectRef: { apiVersion: 'v1', kind: 'Pod', name: r.podName, uid: r.podUid },
          },
        } as never,
      }), `a token for service account ${namespace}/${serviceAccount}`);
      const st = plain<{ status?: { token?: string; expirationTimestamp?: string } }>(tr).status;
      if (!st?.token) throw new Error(`the API server gave no token for service account ${namespace}/${serviceAccount}`);
      return { token: st.token, expiresAt: new Date(st.expirationTimestamp ?? Date.now() + r.expirationSeconds * 1000) };
    },
  };
}
