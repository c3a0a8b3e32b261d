import { invalidArgument, notFound } from '../errdefs/errors.js';
import type { Logger } from '../log/logger.js';
import type { ContentStore } from './content_store.js';
import type { ImageRecord, ImageStore, LayerRecord } from './image_store.js';
import { chainIds, type LayerStore } from './layer_store.js';
import {
  type Descriptor,
  type ImageConfig,
  type ImageIndex,
  type ImageManifest,
  isIndex,
  isManifest,
  mediaTypes,
  nodePlatform,
  type Platform,
  selectPlatform,
} from './media_types.js';
import { formatReference, type ImageReference, parseReference, repositoryOf, tagReference } from './reference.js';
import { layoutImages, layoutSource, openLayout } from './oci_layout.js';
import type { Credentials, RegistryClient } from './registry_client.js';
import type { ContentSource } from './content_source.js';

export type { ContentSource } from './content_source.js';

// Images as the CRI ImageService sees them: pull (resolve → manifest →
// config → layers fetched concurrently → unpacked → record), list, status,
// remove, and garbage collection of blobs and layers no image needs.
//
// A pull either completes with a record or leaves nothing it fetched behind:
// blobs and layers it added that no image refers to are removed on failure.
//
// Leases, as containerd's: each pull, and each container create between
// finding its image and recording its layers, holds a lease naming the blobs
// and layers it uses. Garbage collection (RemoveImage, collectGarbage) and a
// failed pull's cleanup remove nothing that a lease names, so a pull or a
// create in progress never loses what it stands on.

/** What a pull or a create in progress uses; release() (idempotent) when its record names them. */
export interface Lease {
  readonly reason: string;
  readonly blobs: Set<string>;
  readonly chains: Set<string>;
  release(): void;
}

export interface ImageServiceOptions {
  content: ContentStore;
  images: ImageStore;
  layers: LayerStore;
  registry: RegistryClient;
  log: Logger;
  platform?: Platform;
  /** Layers fetched at once. */
  concurrency?: number;
  /** Chain ids that running containers still use; kept by gc even when no image needs them. */
  layersInUse?: () => Set<string>;
  /** Scratch folder for unpacking layout tars. */
  scratchDir: string;
  /** Observes pulls (metrics): start, bytes as they arrive, and the end. */
  onPullStart?: () => void;
  onBytes?: (n: number) => void;
  onPull?: (e: { ref: string; bytes: number; seconds: number; ok: boolean }) => void;
  /** Test-only fault injection between a pull's side effects (CriContext.crashPoint). */
  crashPoint?: (step: string) => void;
}

const layerTypes = new Set<string>([
  mediaTypes.ociLayer,
  mediaTypes.ociLayerGzip,
  mediaTypes.ociLayerZstd,
  mediaTypes.ociLayerNondistGzip,
  mediaTypes.dockerLayerGzip,
  mediaTypes.dockerForeignLayerGzip,
]);

export class ImageService {
  private queue: Promise<unknown> = Promise.resolve();
  private readonly leases = new Set<Lease>();

  constructor(private readonly o: ImageServiceOptions) {}

  /** Runs `f` after every earlier mutation finished: records and gc never interleave. */
  private serial<T>(f: () => Promise<T>): Promise<T> {
    const run = this.queue.then(f, f);
    this.queue = run.catch(() => undefined);
    return run;
  }

  /** A new lease (empty): name what you use in it before you look it up. */
  newLease(reason: string): Lease {
    const lease: Lease = { reason, blobs: new Set(), chains: new Set(), release: () => this.leases.delete(lease) };
    this.leases.add(lease);
    return lease;
  }

  /**
   * A lease on the blobs and layers of the images `ids` (CreateContainer
   * holds it until its record names the layers). Throws NotFound for an
   * image removed meanwhile: its layers may already be going.
   */
  lease(ids: readonly string[], reason: string): Lease {
    const records = ids.map((id) => {
      const r = this.o.images.get(id);
      if (!r) throw notFound(`image ${id} was removed meanwhile; pull it again`, { field: 'config.image.image' });
      return r;
    });
    const lease = this.newLease(reason);
    for (const r of records) {
      for (const b of r.blobs) lease.blobs.add(b);
      for (const l of r.layers) lease.chains.add(l.chainId);
    }
    return lease;
  }

  /** The leases held now (Status verbose info, tests). */
  leased(): Array<{ reason: string; blobs: number; chains: number }> {
    return [...this.leases].map((l) => ({ reason: l.reason, blobs: l.blobs.size, chains: l.chains.size }));
  }

  private blobLeased(d: string): boolean {
    for (const l of this.leases) if (l.blobs.has(d)) return true;
    return false;
  }

  private chainLeased(c: string): boolean {
    for (const l of this.leases) if (l.chains.has(c)) return true;
    return false;
  }

  async pull(image: string, creds: Credentials | undefined, outer?: AbortSignal): Promise<ImageRecord> {
    const ref = parseReference(image, 'image.image');
    const registry = this.o.registry;
    const onBytes = this.o.onBytes;
    const source: ContentSource = {
      manifest: (r, signal) => registry.manifest(r, creds, signal),
      blob: async (digest, size, signal) => {
        const s = await registry.blob(ref, digest, size, creds, signal);
        if (onBytes) s.on('data', (c: Buffer) => onBytes(c.length));
        return s;
      },
    };
    this.o.onPullStart?.();
    return this.install(ref, source, outer, true);
  }

  /**
   * Installs the image `ref` names from `source`: resolve the manifest for
   * this node, fetch config and layers, unpack, record. The registry pull
   * and the offline import both come through here.
   */
  async install(ref: ImageReference, source: ContentSource, outer?: AbortSignal, observed = false): Promise<ImageRecord> {
    // One failure stops the rest of the pull's work before its leftovers are removed.
    const stop = new AbortController();
    const signal = outer ? AbortSignal.any([outer, stop.signal]) : stop.signal;
    const pending: Array<Promise<unknown>> = [];
    const started = process.hrtime.bigint();
    const added = { blobs: new Set<string>(), chains: new Set<string>() };
    // Everything this pull uses, added or found present, is leased before it is looked at.
    const lease = this.newLease(`pull ${formatReference(ref)}`);
    let bytes = 0;
    const log = this.o.log;
    log.info('pulling image', { image: formatReference(ref) });
    try {
      const { manifest, manifestDigest, chain } = await this.resolveManifest(ref, source, signal, added, lease);
      this.o.crashPoint?.('pull_image.manifest');
      const configBytes = await this.fetchSmall(ref, manifest.config, source, signal, added, lease);
      this.o.crashPoint?.('pull_image.config');
      bytes += configBytes.length;
      const config = parseJson<ImageConfig>(configBytes, `config of ${formatReference(ref)}`);
      const diffIds = config.rootfs?.diff_ids ?? [];
      const layers = manifest.layers;
      if (diffIds.length !== layers.length) {
        throw invalidArgument(`${formatReference(ref)}: the config lists ${diffIds.length} diff ids for ${layers.length} layers`, { field: 'image' });
      }
      for (const l of layers) {
        if (!layerTypes.has(l.mediaType)) throw invalidArgument(`${formatReference(ref)}: unsupported layer media type ${l.mediaType}`, { field: 'image' });
      }
      const chains = chainIds(diffIds);
      for (const l of layers) lease.blobs.add(l.digest);
      for (const c of chains) lease.chains.add(c);
      // Fetch with a bound; unpack each layer as soon as it and its parent are there
      // (overlayfs layers are independent; the copy snapshotter needs the parent first).
      const fetched = layers.map(() => deferred());
      let next = 0;
      const worker = async (): Promise<void> => {
        while (next < layers.length) {
          const i = next++;
          const l = layers[i]!;
          try {
            if (!(await this.o.content.has(l.digest))) {
              added.blobs.add(l.digest);
              await this.o.content.ingest(l.digest, l.size, (s) => source.blob(l.digest, l.size, s), signal);
              bytes += l.size;
              log.info('layer fetched', { image: formatReference(ref), layer: l.digest, bytes: l.size, of: `${i + 1}/${layers.length}` });
              this.o.crashPoint?.('pull_image.layer_fetched');
            }
            fetched[i]!.resolve();
          } catch (e: unknown) {
            fetched[i]!.reject(e);
            throw e;
          }
        }
      };
      const fetching = Promise.all(Array.from({ length: Math.min(this.o.concurrency ?? 3, layers.length) }, worker));
      fetched.forEach((d) => d.promise.catch(() => undefined));
      const unpacked: Array<Promise<void>> = [];
      for (let i = 0; i < layers.length; i++) {
        const parentDone: Promise<void> = i > 0 && this.o.layers.snapshotter === 'copy' ? unpacked[i - 1]! : Promise.resolve();
        unpacked.push(
          Promise.all([fetched[i]!.promise, parentDone]).then(async () => {
            const chainId = chains[i]!;
            if (await this.o.layers.has(chainId)) return;
            added.chains.add(chainId);
            await this.o.layers.unpack(chainId, i > 0 ? chains[i - 1] : undefined, diffIds[i]!, this.o.content.path(layers[i]!.digest), signal);
            this.o.crashPoint?.('pull_image.layer_unpacked');
          }),
        );
      }
      unpacked.forEach((p) => p.catch(() => undefined));
      pending.push(fetching, ...unpacked);
      await fetching;
      await Promise.all(unpacked);

      const layerRecords: LayerRecord[] = layers.map((l, i) => ({ digest: l.digest, size: l.size, mediaType: l.mediaType, diffId: diffIds[i]!, chainId: chains[i]! }));
      const record: ImageRecord = {
        id: manifest.config.digest,
        repoTags: [],
        repoDigests: [],
        manifestDigest,
        blobs: [...chain, manifest.config.digest, ...layers.map((l) => l.digest)],
        layers: layerRecords,
        size: manifest.config.size + layers.reduce((n, l) => n + l.size, 0),
        config,
        pulledAt: new Date().toISOString(),
      };
      const saved = await this.serial(() => this.o.images.put(record, tagReference(ref), `${repositoryOf(ref)}@${chain[0]}`));
      lease.release();
      this.o.crashPoint?.('pull_image.record');
      const seconds = Number(process.hrtime.bigint() - started) / 1e9;
      log.info('image pulled', { image: formatReference(ref), id: saved.id, bytes, seconds: seconds.toFixed(3) });
      if (observed) this.o.onPull?.({ ref: formatReference(ref), bytes, seconds, ok: true });
      return saved;
    } catch (e: unknown) {
      stop.abort();
      await Promise.allSettled(pending);
      lease.release();
      await this.serial(() => this.discard(added));
      if (observed) this.o.onPull?.({ ref: formatReference(ref), bytes, seconds: Number(process.hrtime.bigint() - started) / 1e9, ok: false });
      throw e;
    }
  }

  /**
   * The manifest for this node's platform. `chain` lists the digests from the
   * top (what the reference names: index or manifest) down to the manifest.
   */
  private async resolveManifest(
    ref: ImageReference,
    source: ContentSource,
    signal: AbortSignal | undefined,
    added: { blobs: Set<string> },
    lease: Lease,
  ): Promise<{ manifest: ImageManifest; manifestDigest: string; chain: string[] }> {
    const top = await source.manifest(ref, signal);
    lease.blobs.add(top.digest);
    await this.keep(top.digest, top.bytes, added);
    if (isManifest(top.mediaType)) {
      return { manifest: checkManifest(parseJson<ImageManifest>(top.bytes, formatReference(ref)), ref), manifestDigest: top.digest, chain: [top.digest] };
    }
    if (!isIndex(top.mediaType)) throw invalidArgument(`${formatReference(ref)}: unsupported manifest media type ${top.mediaType}`, { field: 'image' });
    const index = parseJson<ImageIndex>(top.bytes, formatReference(ref));
    const want = this.o.platform ?? nodePlatform();
    const pick = selectPlatform(index.manifests ?? [], want);
    if (!pick) {
      const have = (index.manifests ?? []).map((m) => (m.platform ? `${m.platform.os}/${m.platform.architecture}${m.platform.variant ? `/${m.platform.variant}` : ''}` : '?')).join(', ');
      throw invalidArgument(`${formatReference(ref)} has no image for ${want.os}/${want.architecture}${want.variant ? `/${want.variant}` : ''} (it has: ${have || 'none'})`, { field: 'image' });
    }
    const m = await source.manifest({ ...ref, digest: pick.digest, tag: undefined }, signal);
    lease.blobs.add(m.digest);
    await this.keep(m.digest, m.bytes, added);
    return { manifest: checkManifest(parseJson<ImageManifest>(m.bytes, formatReference(ref)), ref), manifestDigest: m.digest, chain: [top.digest, m.digest] };
  }

  private async keep(digest: string, bytes: Buffer, added: { blobs: Set<string> }): Promise<void> {
    if (!(await this.o.content.has(digest))) {
      added.blobs.add(digest);
      await this.o.content.writeBuffer(digest, bytes);
    }
  }

  private async fetchSmall(ref: ImageReference, d: Descriptor, source: ContentSource, signal: AbortSignal | undefined, added: { blobs: Set<string> }, lease: Lease): Promise<Buffer> {
    if (d.size > 16 * 1024 * 1024) throw invalidArgument(`${formatReference(ref)}: config of ${d.size} bytes is too large`, { field: 'image' });
    lease.blobs.add(d.digest);
    if (!(await this.o.content.has(d.digest))) {
      added.blobs.add(d.digest);
      await this.o.content.ingest(d.digest, d.size, (s) => source.blob(d.digest, d.size, s), signal);
    }
    return this.o.content.read(d.digest);
  }

  /** Imports every image of the OCI layout (folder or tar) at `path`. */
  async importLayout(path: string, name: string | undefined, signal?: AbortSignal): Promise<ImageRecord[]> {
    const layout = await openLayout(path, this.o.scratchDir);
    try {
      const out: ImageRecord[] = [];
      for (const { ref } of await layoutImages(layout.dir, name)) {
        this.o.log.info('importing image', { image: formatReference(ref), from: path });
        out.push(await this.install(ref, layoutSource(layout.dir), signal));
      }
      return out;
    } finally {
      await layout.close();
    }
  }

  /** The folders a container's rootfs stands on, bottom layer first (copy snapshotter: the merged top only). */
  layerPaths(r: ImageRecord): string[] {
    const dirs = r.layers.map((l) => this.o.layers.fsPath(l.chainId));
    return this.o.layers.snapshotter === 'copy' ? dirs.slice(-1) : dirs;
  }

  list(filter?: string): ImageRecord[] {
    if (filter === undefined || filter === '') return this.o.images.list();
    const r = this.o.images.resolve(filter);
    return r ? [r] : [];
  }

  status(spec: string): ImageRecord | undefined {
    if (spec === '') throw invalidArgument('an image is required', { field: 'image.image' });
    return this.o.images.resolve(spec);
  }

  /** Removes the image `spec` names with all its tags; success when there is none. */
  async remove(spec: string): Promise<ImageRecord | undefined> {
    if (spec === '') throw invalidArgument('an image is required', { field: 'image.image' });
    return this.serial(async () => {
      const r = this.o.images.resolve(spec);
      if (!r) return undefined;
      await this.o.images.remove(r.id);
      await this.gc();
      this.o.log.info('image removed', { image: spec, id: r.id, tags: r.repoTags.join(',') });
      return r;
    });
  }

  /**
   * Blobs and layers that no image, no container and no lease needs. Call
   * inside serial(). Leases are asked at each removal: one taken while gc
   * runs protects what it names from then on.
   */
  private async gc(): Promise<void> {
    const blobs = this.o.images.referencedBlobs();
    for (const d of await this.o.content.list()) if (!blobs.has(d) && !this.blobLeased(d)) await this.o.content.delete(d);
    const chains = this.o.images.referencedChains();
    for (const c of await this.o.layers.list()) {
      if (chains.has(c) || this.chainLeased(c) || (this.o.layersInUse?.() ?? new Set<string>()).has(c)) continue;
      await this.o.layers.remove(c);
    }
  }

  /** Collects garbage left from before (e.g. a crash mid-pull). */
  async collectGarbage(): Promise<void> {
    await this.serial(() => this.gc());
  }

  private async discard(added: { blobs: Set<string>; chains: Set<string> }): Promise<void> {
    // Another pull (or a create) may use what this one added: its lease keeps it.
    const blobs = this.o.images.referencedBlobs();
    for (const d of added.blobs) if (!blobs.has(d) && !this.blobLeased(d)) await this.o.content.delete(d);
    const chains = this.o.images.referencedChains();
    const inUse = this.o.layersInUse?.() ?? new Set<string>();
    for (const c of added.chains) if (!chains.has(c) && !inUse.has(c) && !this.chainLeased(c)) await this.o.layers.remove(c);
  }
}

function parseJson<T>(bytes: Buffer, what: string): T {
  try {
    return JSON.parse(bytes.toString('utf8')) as T;
  } catch (e: unknown) {
    throw invalidArgument(`${what} is not valid JSON: ${(e as Error).message}`, { field: 'image' });
  }
}

function checkManifest(m: ImageManifest, ref: ImageReference): ImageManifest {
  if (m.schemaVersion !== 2 || !m.config?.digest || !Array.isArray(m.layers)) {
    throw invalidArgument(`${formatReference(ref)}: manifest is not an OCI or Docker schema 2 image manifest`, { field: 'image' });
  }
  return m;
}

function deferred(): { promise: Promise<void>; resolve: () => void; reject: (e: unknown) => void } {
  let resolve!: () => void;
  let reject!: (e: unknown) => void;
  const promise = new Promise<void>((res, rej) => {
    resolve = res;
    reject = rej;
  });
  return { promise, resolve, reject };
}
