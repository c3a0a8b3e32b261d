import { JsonRecords } from '../store/json_records.js';
import type { ImageConfig } from './media_types.js';
import { asImageId, type ImageReference, parseReference, repositoryOf, tagReference } from './reference.js';

// Image records: one JSON file per image, named by its id (the config
// digest), written atomically (temp file + rename). A tag names one image at
// a time: tagging another image moves it. An image left with no tag and no
// digest reference is gone, as in containerd's CRI plugin.

export interface LayerRecord {
  /** Digest of the (compressed) blob in the content store. */
  digest: string;
  size: number;
  mediaType: string;
  /** Digest of the uncompressed tar (config rootfs.diff_ids). */
  diffId: string;
  /** Chain id: identity of this layer on top of all below it (OCI image spec). */
  chainId: string;
}

export interface ImageRecord {
  /** sha256:<config digest hex>, the CRI image id. */
  id: string;
  repoTags: string[];
  /** "repository@sha256:<manifest digest>" */
  repoDigests: string[];
  manifestDigest: string;
  /** Digests of every blob the image needs kept: index (if any), manifest, config, layers. */
  blobs: string[];
  layers: LayerRecord[];
  /** Bytes of content: config and compressed layers, as containerd reports it. */
  size: number;
  config: ImageConfig;
  pulledAt: string;
}

export class ImageStore {
  private readonly records = new Map<string, ImageRecord>();
  private readonly files: JsonRecords<ImageRecord>;

  constructor(dir: string) {
    this.files = new JsonRecords<ImageRecord>(dir, (r) => r.id.slice('sha256:'.length));
  }

  async init(): Promise<void> {
    for (const r of await this.files.loadAll()) this.records.set(r.id, r);
  }

  list(): ImageRecord[] {
    return [...this.records.values()];
  }

  get(id: string): ImageRecord | undefined {
    return this.records.get(id);
  }

  /**
   * The image `spec` names: an id ("sha256:<hex>", "<hex>", or a unique prefix
   * of at least 12 hex digits), a tag, or a repository@digest.
   */
  resolve(spec: string): ImageRecord | undefined {
    const hex = asImageId(spec);
    if (hex && hex.length === 64) {
      const r = this.records.get(`sha256:${hex}`);
      if (r) return r;
    }
    let ref: ImageReference | undefined;
    try {
      ref = parseReference(spec);
    } catch {
      ref = undefined;
    }
    if (ref) {
      if (ref.digest !== undefined) {
        const want = `${repositoryOf(ref)}@${ref.digest}`;
        const r = this.list().find((i) => i.repoDigests.includes(want));
        if (r) return r;
      } else {
        const tag = tagReference(ref);
        const r = this.list().find((i) => i.repoTags.includes(tag!));
        if (r) return r;
      }
    }
    if (hex) {
      const matches = this.list().filter((i) => i.id.slice('sha256:'.length).startsWith(hex));
      if (matches.length === 1) return matches[0];
    }
    return undefined;
  }

  /** Adds or updates `record`, taking `tag` from any other image that had it. */
  async put(record: ImageRecord, tag: string | undefined, repoDigest: string): Promise<ImageRecord> {
    const existing = this.records.get(record.id);
    const merged: ImageRecord = existing
      ? {
          ...existing,
          repoTags: [...existing.repoTags],
          repoDigests: [...existing.repoDigests],
          blobs: [...new Set([...existing.blobs, ...record.blobs])],
          pulledAt: record.pulledAt,
        }
      : { ...record, repoTags: [], repoDigests: [] };
    if (tag !== undefined && !merged.repoTags.includes(tag)) merged.repoTags.push(tag);
    if (!merged.repoDigests.includes(repoDigest)) merged.repoDigests.push(repoDigest);
    if (tag !== undefined) {
      for (const other of this.list()) {
        if (other.id === record.id || !other.repoTags.includes(tag)) continue;
        const moved = { ...other, repoTags: other.repoTags.filter((t) => t !== tag) };
        await this.write(moved);
      }
    }
    await this.write(merged);
    return merged;
  }

  async remove(id: string): Promise<boolean> {
    if (!this.records.has(id)) return false;
    await this.files.remove(id.slice('sha256:'.length));
    this.records.delete(id);
    return true;
  }

  /** Every blob digest some image still needs. */
  referencedBlobs(): Set<string> {
    return new Set(this.list().flatMap((r) => r.blobs));
  }

  referencedChains(): Set<string> {
    return new Set(this.list().flatMap((r) => r.layers.map((l) => l.chainId)));
  }

  private async write(r: ImageRecord): Promise<void> {
    await this.files.write(r);
    this.records.set(r.id, r);
  }
}
