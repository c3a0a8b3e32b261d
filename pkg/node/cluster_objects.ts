import type { KubernetesObject } from '@kubernetes/client-node';

import type { Logger } from '../log/logger.js';
import { Informer } from './informer.js';
import { type Json, type KubeApi, plain, statusOf, timely } from './kube_api.js';
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

export function clusterObjects(api: KubeApi, log: Logger): ApiClusterObjects {
  // Services by a list-and-watch started on first use, as kubelet's service
  // informer: a service made a moment before a pod is in that pod's env.
  let services: Informer<KubernetesObject> | undefined;
  const watchServices = (): Informer<KubernetesObject> => {
    if (!services) {
      services = new Informer({ api, path: '/api/v1/services', list: () => api.core.listServiceForAllNamespaces({}), what: 'service', log });
      services.start();
    }
    return services;
  };
  const serviceInfo = (o: Json): ServiceInfo => {
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
      await services?.stop();
    },
    async services(namespace) {
      const w = watchServices();
      // kubelet's own words: a container is not made with half its environment.
      if (!w.hasSynced) await timely(w.listed, 'the service list').catch(() => Promise.reject(new Error('services have not yet been read at least once, cannot construct envvars')));
      return [...w.list(namespace), ...(namespace === 'default' ? [] : w.list('default').filter((x) => (x.metadata as { name?: string } | undefined)?.name === 'kubernetes'))].map(serviceInfo);
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
