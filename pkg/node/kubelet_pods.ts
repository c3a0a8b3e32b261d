import { criCall, type CriClients } from '../../proto/client.js';
import type { Container__Output } from '../../proto/generated/runtime/v1/Container.js';
import type { ContainerStatusResponse__Output } from '../../proto/generated/runtime/v1/ContainerStatusResponse.js';
import type { PodSandbox__Output } from '../../proto/generated/runtime/v1/PodSandbox.js';

// Finding a pod's containers through the CRI the way the kubelet API names
// them (namespace, pod name, container name), by the labels kubelet puts on
// what it makes: io.kubernetes.pod.{namespace,name,uid} on the sandbox and
// io.kubernetes.container.name on each container. The newest sandbox of the
// name is the pod (a pod deleted and made again has a new uid); every
// attempt of the container in that pod's sandboxes counts for "previous".

export const podNamespaceLabel = 'io.kubernetes.pod.namespace';
export const podNameLabel = 'io.kubernetes.pod.name';
export const podUidLabel = 'io.kubernetes.pod.uid';
export const containerNameLabel = 'io.kubernetes.container.name';

/** A kubelet API error: the HTTP status and the message the caller reads. */
export class KubeletApiError extends Error {
  constructor(
    readonly status: 400 | 404 | 405 | 500 | 503,
    message: string,
  ) {
    super(message);
  }
}

export { criCall };

const byNewest = (a: { createdAt: string }, b: { createdAt: string }): number => {
  const x = BigInt(a.createdAt || '0');
  const y = BigInt(b.createdAt || '0');
  return x > y ? -1 : x < y ? 1 : 0;
};

/** The sandboxes of the pod, newest first (all of one uid); 404 if there are none. */
export async function podSandboxes(cri: CriClients, namespace: string, name: string): Promise<PodSandbox__Output[]> {
  const r = await criCall<{ items: PodSandbox__Output[] }>(cri, 'runtime', 'ListPodSandbox', {
    filter: { labelSelector: { [podNamespaceLabel]: namespace, [podNameLabel]: name } },
  });
  const all = [...r.items].sort(byNewest);
  if (all.length === 0) throw new KubeletApiError(404, `pod "${name}" in namespace "${namespace}" not found on this node`);
  const uid = all[0]!.labels[podUidLabel] ?? all[0]!.metadata?.uid;
  return all.filter((s) => (s.labels[podUidLabel] ?? s.metadata?.uid) === uid);
}

/** The running (or newest) sandbox of the pod. */
export async function podSandbox(cri: CriClients, namespace: string, name: string): Promise<PodSandbox__Output> {
  const list = await podSandboxes(cri, namespace, name);
  return list.find((s) => s.state === 'SANDBOX_READY') ?? list[0]!;
}

/** Every attempt of the container in the pod, newest first; 404 if it has none. */
export async function containerAttempts(cri: CriClients, namespace: string, pod: string, container: string): Promise<Container__Output[]> {
  const sandboxes = await podSandboxes(cri, namespace, pod);
  const found: Container__Output[] = [];
  for (const s of sandboxes) {
    const r = await criCall<{ containers: Container__Output[] }>(cri, 'runtime', 'ListContainers', { filter: { podSandboxId: s.id } });
    found.push(...r.containers.filter((c) => (c.labels[containerNameLabel] ?? c.metadata?.name) === container));
  }
  if (found.length === 0) throw new KubeletApiError(404, `container "${container}" not found in pod "${pod}" in namespace "${namespace}"`);
  return found.sort((a, b) => (b.metadata?.attempt ?? 0) - (a.metadata?.attempt ?? 0) || byNewest(a, b));
}

/** The container's current attempt, or with `previous` the one before it (400 if there is none, as kubelet answers). */
export async function findContainer(cri: CriClients, namespace: string, pod: string, container: string, previous = false): Promise<Container__Output> {
  const attempts = await containerAttempts(cri, namespace, pod, container);
  const c = attempts[previous ? 1 : 0];
  if (!c) throw new KubeletApiError(400, `previous terminated container "${container}" in pod "${pod}" not found`);
  return c;
}

export async function containerStatus(cri: CriClients, id: string): Promise<NonNullable<ContainerStatusResponse__Output['status']>> {
  const r = await criCall<ContainerStatusResponse__Output>(cri, 'runtime', 'ContainerStatus', { containerId: id });
  if (!r.status) throw new KubeletApiError(500, `ContainerStatus of ${id}: no status`);
  return r.status;
}
