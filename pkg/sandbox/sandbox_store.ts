import { alreadyExists, notFound } from '../errdefs/errors.js';
import { JsonRecords } from '../store/json_records.js';
import { type RecordChange, RecordObservers } from '../store/record_changes.js';
import type { IdMapping } from './oci_spec_types.js';

// Pod sandbox records, one JSON file per sandbox written atomically, loaded
// on start so an agent restart loses nothing.
//
//   RunPodSandbox ──▶ READY ──StopPodSandbox──▶ NOTREADY ──RemovePodSandbox──▶ (gone)
//                       └───────────── RemovePodSandbox (stops first) ─────────────┘
//
// A name (namespace, name, uid, attempt) belongs to one sandbox at a time, as
// kubelet expects.

export type SandboxState = 'SANDBOX_READY' | 'SANDBOX_NOTREADY';

export interface SandboxMetadata {
  name: string;
  uid: string;
  namespace: string;
  attempt: number;
}

export interface SandboxRecord {
  id: string;
  metadata: SandboxMetadata;
  state: SandboxState;
  /** Nanoseconds since the epoch, as a decimal string. */
  createdAt: string;
  labels: Record<string, string>;
  annotations: Record<string, string>;
  runtimeHandler: string;
  hostname: string;
  hostNetwork: boolean;
  /** Bind-mounted namespace files; net is absent for hostNetwork pods. */
  /** The pod's own namespaces (bind mounts); net and ipc absent: the node's (hostNetwork, hostIPC). */
  namespaces: { net?: string; ipc?: string; uts: string; user?: string };
  /** The PID 1 of the pod's process namespace (shareProcessNamespace); absent: each container has its own, or the node's. */
  pidNamespace?: { pid: number; startTime: number };
  /** The mappings of the pod's own user namespace (namespaces.user); absent: the node's. */
  userns?: { uids: IdMapping[]; gids: IdMapping[] };
  /** Set while the pod's network is attached (READY); cleared by Stop. */
  network?: { ip: string; additionalIps: string[]; cniResult: unknown; hostPortForwards?: number[] };
  files: { dir: string; hostname: string; hosts: string; resolvConf: string };
  logDirectory: string;
  portMappings: Array<{ hostPort: number; containerPort: number; protocol: 'tcp' | 'udp' | 'sctp'; hostIP?: string }>;
  /** The CRI config as given, for the containers of this pod. */
  config: unknown;
  /** The last UpdatePodSandboxResources (CRI form), recorded, not enforced. */
  resources?: { overhead?: unknown; resources?: unknown; notEnforced: string };
}

export function nameKey(m: SandboxMetadata): string {
  return `${m.namespace}/${m.name}/${m.uid}/${m.attempt}`;
}

export class SandboxStore {
  private readonly records = new Map<string, SandboxRecord>();
  private readonly files: JsonRecords<SandboxRecord>;
  private readonly observers = new RecordObservers<SandboxRecord>();

  constructor(dir: string) {
    this.files = new JsonRecords<SandboxRecord>(dir, (r) => r.id);
  }

  async init(): Promise<void> {
    for (const r of await this.files.loadAll()) this.records.set(r.id, r);
  }

  /** Reserves the name; throws AlreadyExists for a second sandbox of one name. */
  async add(r: SandboxRecord): Promise<void> {
    if (this.records.has(r.id)) throw alreadyExists(`pod sandbox ${r.id} already exists`, { field: 'pod_sandbox_id' });
    const clash = this.list().find((o) => nameKey(o.metadata) === nameKey(r.metadata));
    if (clash) {
      throw alreadyExists(`a pod sandbox named ${nameKey(r.metadata)} already exists (${clash.id}); remove it first`, { field: 'config.metadata' });
    }
    await this.write(r);
  }

  /** Told after every add, update and delete is on disk. */
  onChange(observer: RecordChange<SandboxRecord>): () => void {
    return this.observers.add(observer);
  }

  get(id: string): SandboxRecord {
    const r = this.find(id);
    if (!r) throw notFound(`pod sandbox ${id} not found`, { field: 'pod_sandbox_id' });
    return r;
  }

  /** By full id or unique prefix; undefined when none. */
  find(id: string): SandboxRecord | undefined {
    if (id === '') return undefined;
    const exact = this.records.get(id);
    if (exact) return exact;
    const m = this.list().filter((r) => r.id.startsWith(id));
    return m.length === 1 ? m[0] : undefined;
  }

  list(): SandboxRecord[] {
    return [...this.records.values()];
  }

  async update(r: SandboxRecord): Promise<void> {
    await this.write(r);
  }

  async delete(id: string): Promise<void> {
    await this.files.remove(id);
    const prev = this.records.get(id);
    this.records.delete(id);
    if (prev) this.observers.notify(prev, undefined);
  }

  private async write(r: SandboxRecord): Promise<void> {
    await this.files.write(r);
    const prev = this.records.get(r.id);
    this.records.set(r.id, r);
    this.observers.notify(prev, r);
  }
}
