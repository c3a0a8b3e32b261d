import { alreadyExists, type DomainError, failedPrecondition, notFound } from '../errdefs/errors.js';
import { JsonRecords } from '../store/json_records.js';
import { KeyedQueue } from '../store/keyed_queue.js';
import { NameIndex } from '../store/name_index.js';
import { type RecordChange, RecordObservers } from '../store/record_changes.js';
import type { IdMapping } from './oci_spec_types.js';

// Pod sandbox records, one JSON file per sandbox written atomically, loaded
// on start so an agent restart loses nothing.
//
//   RunPodSandbox ──▶ READY ──StopPodSandbox──▶ NOTREADY ──RemovePodSandbox──▶ (gone)
//                       └───────────── RemovePodSandbox (stops first) ─────────────┘
//
// A name (namespace, name, uid, attempt) belongs to one sandbox at a time, as
// kubelet expects: RunPodSandbox reserves it (reserveName) before it makes
// anything, so two concurrent requests for one name cannot both pass.
//
// Writes of one record happen one at a time, in call order (as the container
// store's): Stop, Remove, UpdatePodSandboxResources and a CreateContainer
// committing into the pod may all touch one sandbox at once, and a write that
// comes after the removal is dropped (a late Stop must not bring a removed
// pod back).

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
  private readonly queue = new KeyedQueue();
  private readonly names = new NameIndex('pod sandbox');
  /** Pods that take no new container: stopping or stopped (a pod never becomes ready again). */
  private readonly closed = new Set<string>();

  constructor(dir: string) {
    this.files = new JsonRecords<SandboxRecord>(dir, (r) => r.id);
  }

  async init(): Promise<void> {
    for (const r of await this.files.loadAll()) {
      this.records.set(r.id, r);
      this.names.reserve(nameKey(r.metadata), r.id);
    }
  }

  /**
   * Takes the name `key` (nameKey) for the sandbox `id` about to be made;
   * throws AlreadyExists when another sandbox has it or is being made with it.
   * Synchronous: call it before the first await of RunPodSandbox.
   */
  reserveName(key: string, id: string): void {
    this.names.reserve(key, id);
  }

  /** Gives back a name reserved for `id` whose sandbox was not made. */
  releaseName(key: string, id: string): void {
    if (!this.records.has(id)) this.names.release(key, id);
  }

  /** Throws AlreadyExists for a second sandbox of one name (reserving it when the caller did not). */
  async add(r: SandboxRecord): Promise<void> {
    if (this.records.has(r.id)) throw alreadyExists(`pod sandbox ${r.id} already exists`, { field: 'pod_sandbox_id' });
    this.names.reserve(nameKey(r.metadata), r.id);
    await this.queue.run(r.id, () => this.write(r));
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

  /** A record removed meanwhile stays removed. */
  async update(r: SandboxRecord): Promise<void> {
    await this.modify(r.id, () => r);
  }

  /**
   * Read-modify-write of the record as it is when this write's turn comes;
   * `change` returning the record unchanged writes nothing. Undefined when
   * the record is gone.
   */
  modify(id: string, change: (current: SandboxRecord) => SandboxRecord): Promise<SandboxRecord | undefined> {
    return this.queue.run(id, async () => {
      const current = this.records.get(id);
      if (!current) return undefined;
      const next = change(current);
      if (next !== current) await this.write(next);
      return next;
    });
  }

  async delete(id: string): Promise<void> {
    await this.queue.run(id, async () => {
      await this.files.remove(id);
      const prev = this.records.get(id);
      this.records.delete(id);
      this.closed.delete(id);
      this.names.releaseId(id);
      if (prev) this.observers.notify(prev, undefined);
    });
  }

  /**
   * From now on the pod takes no new container (StopPodSandbox calls it
   * first): a CreateContainer committing later (whileReady) is refused, one
   * that committed earlier is in the container store for Stop to find.
   */
  async closeToContainers(id: string): Promise<void> {
    await this.queue.run(id, async () => {
      this.closed.add(id);
    });
  }

  /**
   * Runs `op` (a container's commit) in the pod's turn, while it is READY and
   * not closed: CreateContainer re-checks its pod at commit. Throws NotFound
   * when the pod is gone, FailedPrecondition when it is stopping or stopped.
   */
  whileReady<T>(id: string, op: () => Promise<T>): Promise<T> {
    return this.queue.run(id, async () => {
      const gone = this.notReadyError(id);
      if (gone) throw gone;
      return op();
    });
  }

  /**
   * Why the pod takes no container now (NotFound: removed; FailedPrecondition:
   * stopping or stopped), or undefined when it is ready. CreateContainer
   * answers this instead of the error its undone work met (a runc that found
   * the pod's namespaces gone) when the pod went away meanwhile.
   */
  notReadyError(id: string, cause?: string): DomainError | undefined {
    const why = cause ? ` (${cause})` : '';
    const r = this.records.get(id);
    if (!r) return notFound(`pod sandbox ${id} was removed while the container was being created${why}`, { field: 'pod_sandbox_id' });
    if (r.state !== 'SANDBOX_READY' || this.closed.has(id)) {
      return failedPrecondition(`pod sandbox ${id} was stopped while the container was being created${why}`, { field: 'pod_sandbox_id' });
    }
    return undefined;
  }

  private async write(r: SandboxRecord): Promise<void> {
    await this.files.write(r);
    const prev = this.records.get(r.id);
    this.records.set(r.id, r);
    this.observers.notify(prev, r);
  }
}
