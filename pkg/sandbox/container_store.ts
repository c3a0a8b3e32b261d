import { alreadyExists, notFound } from '../errdefs/errors.js';
import { JsonRecords } from '../store/json_records.js';
import { KeyedQueue } from '../store/keyed_queue.js';
import { NameIndex } from '../store/name_index.js';
import { type RecordChange, RecordObservers } from '../store/record_changes.js';

// Container records, one JSON file each, written atomically.
//
//   CreateContainer ──▶ CREATED ──StartContainer──▶ RUNNING ──(exit | StopContainer)──▶ EXITED
//        RemoveContainer from any state (a running one is killed first) ──▶ (gone)
//
// The exit is learnt from conmon's exit file, so an exit while the agent was
// down is found on the next look.
//
// Writes of one record happen one at a time, in call order: the exit watcher,
// status calls and removal may all write the same container at once, and an
// update that comes after the removal is dropped (a late exit must not bring
// a removed container back).
//
// A name (pod, name, attempt) belongs to one container at a time:
// CreateContainer reserves it (reserveName) before it makes anything.

export type ContainerState = 'CONTAINER_CREATED' | 'CONTAINER_RUNNING' | 'CONTAINER_EXITED' | 'CONTAINER_UNKNOWN';

export interface ContainerRecord {
  id: string;
  sandboxId: string;
  metadata: { name: string; attempt: number };
  /** What the CRI config asked for, and the image it resolved to. */
  image: string;
  imageId: string;
  imageRef: string;
  labels: Record<string, string>;
  annotations: Record<string, string>;
  state: ContainerState;
  /** Nanoseconds since the epoch, decimal strings; "0" when not yet. */
  createdAt: string;
  startedAt: string;
  finishedAt: string;
  exitCode: number;
  reason: string;
  message: string;
  pid: number;
  logPath: string;
  bundle: string;
  rootfs: string;
  /** Chain ids of the image layers its rootfs stands on (kept while it exists). */
  layers: string[];
  /** image/imageRef: an image volume (hostPath empty), its image as asked for and the image's id. */
  mounts: Array<{ containerPath: string; hostPath: string; readonly: boolean; propagation: string; image?: string; imageRef?: string }>;
  stopSignal: string;
  terminationMessagePath: string;
  config: unknown;
  /** The identity its process runs as (after the image's /etc/passwd and /etc/group and the supplemental groups policy). */
  user?: { uid: number; gid: number; additionalGids: number[] };
  /**
   * The resources the container has now: its config's, then each
   * UpdateContainerResources merged in (CRI form). Absent: the config's.
   */
  resources?: unknown;
  /** Why the resources above are not enforced; absent or empty when they are. */
  resourcesNotEnforced?: string;
}

export class ContainerStore {
  private readonly records = new Map<string, ContainerRecord>();
  private readonly files: JsonRecords<ContainerRecord>;
  private readonly observers = new RecordObservers<ContainerRecord>();
  private readonly queue = new KeyedQueue();
  private readonly names = new NameIndex('container');

  constructor(dir: string) {
    this.files = new JsonRecords<ContainerRecord>(dir, (r) => r.id);
  }

  async init(): Promise<void> {
    for (const r of await this.files.loadAll()) {
      this.records.set(r.id, r);
      this.names.reserve(containerNameKey(r.sandboxId, r.metadata), r.id);
    }
  }

  /**
   * Takes the name `key` (containerNameKey) for the container `id` about to
   * be made; throws AlreadyExists when another container has it or is being
   * made with it. Synchronous: call it before CreateContainer's first await.
   */
  reserveName(key: string, id: string): void {
    this.names.reserve(key, id);
  }

  /** Gives back a name reserved for `id` whose container was not made. */
  releaseName(key: string, id: string): void {
    if (!this.records.has(id)) this.names.release(key, id);
  }

  async add(r: ContainerRecord): Promise<void> {
    const key = containerNameKey(r.sandboxId, r.metadata);
    const owner = this.names.ownerOf(key);
    if (owner !== undefined && owner !== r.id) {
      throw alreadyExists(`container ${r.metadata.name} (attempt ${r.metadata.attempt}) already exists in pod ${r.sandboxId.slice(0, 12)} (${owner})`, { field: 'config.metadata' });
    }
    this.names.reserve(key, r.id);
    await this.serially(r.id, () => this.write(r));
  }

  /** Told after every add, update and delete is on disk. */
  onChange(observer: RecordChange<ContainerRecord>): () => void {
    return this.observers.add(observer);
  }

  find(id: string): ContainerRecord | undefined {
    if (id === '') return undefined;
    const exact = this.records.get(id);
    if (exact) return exact;
    const m = this.list().filter((r) => r.id.startsWith(id));
    return m.length === 1 ? m[0] : undefined;
  }

  get(id: string): ContainerRecord {
    const r = this.find(id);
    if (!r) throw notFound(`container ${id} not found`, { field: 'container_id' });
    return r;
  }

  list(): ContainerRecord[] {
    return [...this.records.values()];
  }

  /** A record removed meanwhile stays removed. */
  async update(r: ContainerRecord): Promise<void> {
    await this.modify(r.id, () => r);
  }

  /**
   * Read-modify-write of the record as it is when this write's turn comes;
   * `change` returning the record unchanged writes nothing. Undefined when
   * the record is gone.
   */
  modify(id: string, change: (current: ContainerRecord) => ContainerRecord): Promise<ContainerRecord | undefined> {
    return this.serially(id, async () => {
      const current = this.records.get(id);
      if (!current) return undefined;
      const next = change(current);
      if (next !== current) await this.write(next);
      return next;
    });
  }

  async delete(id: string): Promise<void> {
    await this.serially(id, async () => {
      await this.files.remove(id);
      const prev = this.records.get(id);
      this.records.delete(id);
      this.names.releaseId(id);
      if (prev) this.observers.notify(prev, undefined);
    });
  }

  /** Chain ids some container's rootfs stands on: image gc keeps them. */
  layersInUse(): Set<string> {
    return new Set(this.list().flatMap((r) => r.layers));
  }

  private async write(r: ContainerRecord): Promise<void> {
    await this.files.write(r);
    const prev = this.records.get(r.id);
    this.records.set(r.id, r);
    this.observers.notify(prev, r);
  }

  /** Runs `op` after every earlier operation on record `id` has settled. */
  private serially<T>(id: string, op: () => Promise<T>): Promise<T> {
    return this.queue.run(id, op);
  }
}

/** The key a container's name is unique under: its pod, name and attempt. */
export function containerNameKey(sandboxId: string, m: { name: string; attempt: number }): string {
  return `${sandboxId}/${m.name}/${m.attempt}`;
}
