import { readFile } from 'node:fs/promises';

import type { StopPodSandboxRequest__Output, StopPodSandboxResponse } from '../../proto/types.js';
import { invalidArgument } from '../errdefs/errors.js';
import type { CniResult } from '../netns/cni/invoke.js';
import type { SandboxRecord } from '../sandbox/sandbox_store.js';
import { stopRecord } from './container_stop.js';
import { podAttachment } from './pod_network.js';
import type { PodRuntime } from './pods.js';
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
  ctx.crashPoint?.('stop_pod_sandbox.containers');
  await releasePodResources(pods, r, ctx.crashPoint);
  if (r.state !== 'SANDBOX_NOTREADY' || r.network) {
    // Of the record as it is now: an UpdatePodSandboxResources meanwhile stays, the network does not come back.
    await pods.store.modify(r.id, ({ network: _net, ...cur }) => ({ ...cur, state: 'SANDBOX_NOTREADY' }));
    ctx.log.info('pod sandbox stopped', { id: r.id.slice(0, 12), pod: `${r.metadata.namespace}/${r.metadata.name}` });
  }
}

/** What releasePodResources needs of a pod: its record, or what recovery found named by an id that has none. */
export type PodResources = Pick<SandboxRecord, 'id' | 'metadata' | 'namespaces' | 'portMappings' | 'network' | 'pidNamespace'>;

/**
 * Gives back what a pod holds outside its files: its process namespace
 * (catatonit and whatever runs in it), its host ports, and its network (CNI
 * DEL: the IP lease, the veth, portmap's NAT rules). The one release path of
 * StopPodSandbox, RemovePodSandbox and recovery at start (recover.ts), so all
 * three say the same thing and each may run again after a crash midway:
 *  - a host port forward is removed only while it still forwards to the
 *    pod's address (the rootlesskit of a record may be gone and another one
 *    hand out the same ids: a wiped runtime folder);
 *  - DEL is given the network namespace only while it is mounted (a plain
 *    file there fails the bridge plugin; without one it still releases the
 *    lease, and a veth dies with its namespace).
 */
export async function releasePodResources(pods: PodRuntime, r: PodResources, crashPoint?: (step: string) => void): Promise<void> {
  // The pod's process namespace ends with its PID 1 (and whatever exec left in it).
  if (r.pidNamespace) await pods.namespaces.stopPidNamespace(r.pidNamespace);
  crashPoint?.('stop_pod_sandbox.pid_namespace');
  const ip = r.network?.ip;
  const ids = r.network?.hostPortForwards ?? [];
  if (ip && ids.length > 0) {
    for (const f of await pods.ports.list()) if (ids.includes(f.id) && f.childIP === ip) await pods.ports.remove(f.id);
  }
  crashPoint?.('stop_pod_sandbox.host_ports');
  if (r.network && r.namespaces.net) {
    const netns = (await mountedPaths()).has(r.namespaces.net) ? r.namespaces.net : '';
    await pods.cni.del(podAttachment(r.id, r.metadata, netns, r.portMappings), r.network.cniResult as CniResult | undefined);
  }
  crashPoint?.('stop_pod_sandbox.cni_del');
}

/** The mount points of this mount namespace (/proc/self/mountinfo, field 5, octal escapes undone). */
export async function mountedPaths(): Promise<Set<string>> {
  const text = await readFile('/proc/self/mountinfo', 'utf8').catch(() => '');
  const out = new Set<string>();
  for (const line of text.split('\n')) {
    const f = line.split(' ')[4];
    if (f) out.add(f.replace(/\\([0-7]{3})/g, (_m, o: string) => String.fromCharCode(Number.parseInt(o, 8))));
  }
  return out;
}
