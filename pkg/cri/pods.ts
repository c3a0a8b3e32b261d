import type { CniNetwork } from '../netns/cni/invoke.js';
import type { PodNamespaces } from '../netns/pod_namespaces.js';
import type { PortManager } from '../netns/port_manager.js';
import type { SandboxRecord, SandboxStore } from '../sandbox/sandbox_store.js';

/** What the pod sandbox RPCs work with (CriContext.pods). */
export interface PodRuntime {
  store: SandboxStore;
  namespaces: PodNamespaces;
  cni: CniNetwork;
  /** Host ports from the user's host into the node (rootlesskit's port driver). */
  ports: PortManager;
  /** Per-pod files (hosts, resolv.conf, hostname) live under here. */
  podsDir: string;
  /** The node's resolv.conf, for pods without a DNSConfig. */
  nodeResolvConf: string;
  /** The node's own host name, for hostNetwork pods without one. */
  nodeHostname: string;
  /** How many uids and gids the node's user namespace has (0…n-1): a pod's own user namespace maps inside them. */
  nodeIds: { uids: number; gids: number };
}

/** The CRI's pod sandbox filters (ListPodSandbox, ListPodSandboxStats): id by prefix, as crictl sends it; every label must match. */
export function matchesSandboxFilter(r: SandboxRecord, f: { id?: string; labelSelector?: Record<string, string> } | null | undefined): boolean {
  return (!f?.id || r.id.startsWith(f.id)) && Object.entries(f?.labelSelector ?? {}).every(([k, v]) => r.labels[k] === v);
}
