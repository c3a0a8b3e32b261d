import type { StopPodSandboxRequest__Output, StopPodSandboxResponse } from '../../proto/types.js';
import { invalidArgument } from '../errdefs/errors.js';
import type { CniResult } from '../netns/cni/invoke.js';
import type { SandboxRecord } from '../sandbox/sandbox_store.js';
import { stopRecord } from './container_stop.js';
import { podAttachment } from './pod_network.js';
import type { CriContext } from './context.js';

// StopPodSandbox: the pod's network is given back (CNI DEL, the network
// namespace unmounted) and the sandbox is NOTREADY. kubelet calls it more
// than once and for pods already gone: both are success (api.proto).

export async function stopPodSandbox(req: StopPodSandboxRequest__Output, ctx: CriContext): Promise<StopPodSandboxResponse> {
  if (req.podSandboxId === '') throw invalidArgument('pod_sandbox_id is required', { field: 'pod_sandbox_id' });
  const r = ctx.pods.store.find(req.podSandboxId);
  if (!r) return {};
  await stopSandbox(r, ctx);
  return {};
}

export async function stopSandbox(r: SandboxRecord, ctx: CriContext): Promise<void> {
  const pods = ctx.pods;
  // No container may join the pod from here on (a CreateContainer committing later is undone).
  await pods.store.closeToContainers(r.id);
  // Its containers first: nothing of the pod may run once its network is gone.
  for (const c of ctx.containers.store.list().filter((x) => x.sandboxId === r.id)) await stopRecord(c, 0, ctx.containers);
  // The pod's process namespace ends with its PID 1 (and whatever exec left in it).
  if (r.pidNamespace) await pods.namespaces.stopPidNamespace(r.pidNamespace);
  for (const id of r.network?.hostPortForwards ?? []) await pods.ports.remove(id);
  if (r.network && r.namespaces.net) {
    await pods.cni.del(podAttachment(r.id, r.metadata, r.namespaces.net, r.portMappings), r.network.cniResult as CniResult);
  }
  if (r.state !== 'SANDBOX_NOTREADY' || r.network) {
    // Of the record as it is now: an UpdatePodSandboxResources meanwhile stays, the network does not come back.
    await pods.store.modify(r.id, ({ network: _net, ...cur }) => ({ ...cur, state: 'SANDBOX_NOTREADY' }));
    ctx.log.info('pod sandbox stopped', { id: r.id.slice(0, 12), pod: `${r.metadata.namespace}/${r.metadata.name}` });
  }
}
