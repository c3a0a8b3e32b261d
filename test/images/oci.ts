import { spawnSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { gzipSync } from 'node:zlib';

import * as tar from 'tar-stream';

// The pieces of an OCI (or Docker schema 2) image, built in memory and
// deterministically: every tar entry has a fixed owner and mtime, entries are
// sorted, JSON is built with a fixed key order, so the same input always gives
// the same bytes and therefore the same digests.

export const mediaTypes = {
  ociManifest: 'application/vnd.oci.image.manifest.v1+json',
  ociIndex: 'application/vnd.oci.image.index.v1+json',
  ociConfig: 'application/vnd.oci.image.config.v1+json',
  ociLayerGzip: 'application/vnd.oci.image.layer.v1.tar+gzip',
  ociLayerZstd: 'application/vnd.oci.image.layer.v1.tar+zstd',
  dockerManifest: 'application/vnd.docker.distribution.manifest.v2+json',
  dockerManifestList: 'application/vnd.docker.distribution.manifest.list.v2+json',
  dockerConfig: 'application/vnd.docker.container.image.v1+json',
  dockerLayerGzip: 'application/vnd.docker.image.rootfs.diff.tar.gzip',
} as const;

/** Which family of media types an image is written with. */
export type Flavor = 'oci' | 'docker';
export type Compression = 'gzip' | 'zstd';

/** The one timestamp every entry and config carries (2024-01-01T00:00:00Z). */
export const fixedTime = new Date(Date.UTC(2024, 0, 1));

export interface Blob {
  mediaType: string;
  digest: string;
  size: number;
  bytes: Buffer;
}

export const sha256 = (b: Buffer): string => `sha256:${createHash('sha256').update(b).digest('hex')}`;

export function blob(mediaType: string, bytes: Buffer): Blob {
  return { mediaType, digest: sha256(bytes), size: bytes.length, bytes };
}

export type LayerEntry =
  | { type: 'file'; path: string; content: string | Buffer; mode?: number; uid?: number; gid?: number }
  | { type: 'dir'; path: string; mode?: number; uid?: number; gid?: number }
  | { type: 'symlink'; path: string; target: string }
  | { type: 'hardlink'; path: string; target: string };

export const file = (path: string, content: string | Buffer, mode = 0o644, owner?: { uid: number; gid: number }): LayerEntry => ({
  type: 'file',
  path,
  content,
  mode,
  ...owner,
});
export const dir = (path: string, mode = 0o755, owner?: { uid: number; gid: number }): LayerEntry => ({ type: 'dir', path, mode, ...owner });
export const symlink = (path: string, target: string): LayerEntry => ({ type: 'symlink', path, target });
/** A hard link to `target`, a path in the same layer (relative to /, as tar writes it). */
export const hardlink = (path: string, target: string): LayerEntry => ({ type: 'hardlink', path, target });
/** An OCI whiteout: `path` of a lower layer is deleted. */
export const whiteout = (path: string): LayerEntry => {
  const slash = path.lastIndexOf('/');
  return file(`${path.slice(0, slash + 1)}.wh.${path.slice(slash + 1)}`, '');
};
/** An OCI opaque marker: what lower layers have under `path` is hidden. */
export const opaque = (path: string): LayerEntry => file(`${path}/.wh..wh..opq`, '');

/** Adds a directory entry for every parent of an entry that has none (never for `.`/`..` paths). */
export function withParents(entries: readonly LayerEntry[]): LayerEntry[] {
  const have = new Set(entries.map((e) => e.path));
  const out = [...entries];
  for (const e of entries) {
    const parts = e.path.split('/');
    if (parts.some((p) => p === '..' || p === '.')) continue;
    for (let i = 1; i < parts.length; i++) {
      const p = parts.slice(0, i).join('/');
      if (!have.has(p)) {
        have.add(p);
        out.push(dir(p));
      }
    }
  }
  return out;
}

/** An uncompressed tar of `entries`, sorted by path (parents sort before children), hard links last (after their targets). */
export async function tarball(entries: readonly LayerEntry[]): Promise<Buffer> {
  const byPath = (a: LayerEntry, b: LayerEntry): number => (a.path < b.path ? -1 : a.path > b.path ? 1 : 0);
  const sorted = [...entries.filter((e) => e.type !== 'hardlink').sort(byPath), ...entries.filter((e) => e.type === 'hardlink').sort(byPath)];
  const seen = new Set<string>();
  for (const e of sorted) {
    if (seen.has(e.path)) throw new Error(`layer has two entries for ${e.path}`);
    seen.add(e.path);
  }
  const pack = tar.pack();
  const chunks: Buffer[] = [];
  const done = (async () => {
    for await (const c of pack) chunks.push(c as Buffer);
  })();
  const common = { mtime: fixedTime, uname: '', gname: '' };
  for (const e of sorted) {
    await new Promise<void>((resolve, reject) => {
      const cb = (err?: Error | null): void => (err ? reject(err) : resolve());
      switch (e.type) {
        case 'file': {
          const content = typeof e.content === 'string' ? Buffer.from(e.content) : e.content;
          pack.entry({ ...common, name: e.path, type: 'file', mode: e.mode ?? 0o644, uid: e.uid ?? 0, gid: e.gid ?? 0, size: content.length }, content, cb);
          break;
        }
        case 'dir':
          pack.entry({ ...common, name: e.path, type: 'directory', mode: e.mode ?? 0o755, uid: e.uid ?? 0, gid: e.gid ?? 0 }, cb);
          break;
        case 'symlink':
          pack.entry({ ...common, name: e.path, type: 'symlink', mode: 0o777, uid: 0, gid: 0, linkname: e.target }, cb);
          break;
        case 'hardlink': {
          // As tar writes it: the link's header carries its file's mode and
          // owner (containerd applies them to the file when it makes the link).
          const t = sorted.find((x) => x.path === e.target);
          const meta = t && t.type === 'file' ? { mode: t.mode ?? 0o644, uid: t.uid ?? 0, gid: t.gid ?? 0 } : { mode: 0o644, uid: 0, gid: 0 };
          pack.entry({ ...common, name: e.path, type: 'link', ...meta, linkname: e.target }, cb);
          break;
        }
      }
    });
  }
  pack.finalize();
  await done;
  return Buffer.concat(chunks);
}

export interface Layer {
  /** The compressed blob as pushed. */
  blob: Blob;
  /** sha256 of the uncompressed tar: the config's rootfs.diff_ids entry. */
  diffId: string;
  compression: Compression;
}

export function layerMediaType(flavor: Flavor, compression: Compression): string {
  if (compression === 'zstd') {
    if (flavor === 'docker') throw new Error('Docker schema 2 has no zstd layer media type');
    return mediaTypes.ociLayerZstd;
  }
  return flavor === 'oci' ? mediaTypes.ociLayerGzip : mediaTypes.dockerLayerGzip;
}

/** Compresses a tar once per (content, compression); gzip's header carries no name and mtime 0. */
export class LayerCompressor {
  private readonly cache = new Map<string, Buffer>();

  compress(tarBytes: Buffer, compression: Compression): { bytes: Buffer; diffId: string } {
    const diffId = sha256(tarBytes);
    const key = `${compression} ${diffId}`;
    let bytes = this.cache.get(key);
    if (!bytes) {
      bytes = compression === 'gzip' ? gzipSync(tarBytes, { level: 6 }) : zstdCompress(tarBytes);
      this.cache.set(key, bytes);
    }
    return { bytes, diffId };
  }
}

function zstdCompress(input: Buffer): Buffer {
  const r = spawnSync('zstd', ['-q', '-c', '-3', '--no-progress'], { input, maxBuffer: 256 * 1024 * 1024 });
  if (r.error) throw new Error(`zstd is required for the zstd test image (scripts/host-setup.sh --tests installs it): ${r.error.message}`);
  if (r.status !== 0) throw new Error(`zstd failed (${r.status}): ${r.stderr.toString()}`);
  return r.stdout;
}

export interface Platform {
  os: 'linux';
  architecture: string;
  variant?: string;
}

export const platformString = (p: Platform): string => `${p.os}/${p.architecture}${p.variant ? `/${p.variant}` : ''}`;

/** The parts of an image config's `config` object the test images set. */
export interface RunConfig {
  User?: string;
  Env: string[];
  Entrypoint?: string[];
  Cmd?: string[];
  WorkingDir?: string;
  ExposedPorts?: Record<string, Record<string, never>>;
  Labels?: Record<string, string>;
}

export interface BuiltImage {
  kind: 'image';
  flavor: Flavor;
  platform: Platform;
  manifest: Blob;
  config: Blob;
  layers: Layer[];
  run: RunConfig;
}

export interface BuiltIndex {
  kind: 'index';
  flavor: Flavor;
  manifest: Blob;
  children: BuiltImage[];
}

export type Built = BuiltImage | BuiltIndex;

const descriptor = (b: Blob): { mediaType: string; digest: string; size: number } => ({ mediaType: b.mediaType, digest: b.digest, size: b.size });

/** A config + manifest over already compressed layers. */
export function image(flavor: Flavor, platform: Platform, layers: Layer[], run: RunConfig, history: string[]): BuiltImage {
  if (history.length !== layers.length) throw new Error('one history line per layer');
  const configJson = {
    created: fixedTime.toISOString(),
    architecture: platform.architecture,
    ...(platform.variant ? { variant: platform.variant } : {}),
    os: platform.os,
    config: run,
    rootfs: { type: 'layers', diff_ids: layers.map((l) => l.diffId) },
    history: history.map((created_by) => ({ created: fixedTime.toISOString(), created_by })),
  };
  const config = blob(flavor === 'oci' ? mediaTypes.ociConfig : mediaTypes.dockerConfig, Buffer.from(JSON.stringify(configJson)));
  const manifestJson = {
    schemaVersion: 2,
    mediaType: flavor === 'oci' ? mediaTypes.ociManifest : mediaTypes.dockerManifest,
    config: descriptor(config),
    layers: layers.map((l) => descriptor(l.blob)),
  };
  const manifest = blob(manifestJson.mediaType, Buffer.from(JSON.stringify(manifestJson)));
  return { kind: 'image', flavor, platform, manifest, config, layers, run };
}

/** An OCI image index or Docker manifest list over `children`, one entry per platform. */
export function index(flavor: Flavor, children: BuiltImage[]): BuiltIndex {
  const seen = new Set<string>();
  for (const c of children) {
    const p = platformString(c.platform);
    if (seen.has(p)) throw new Error(`index has two entries for ${p}`);
    seen.add(p);
    if (c.flavor !== flavor) throw new Error(`a ${flavor} index cannot list a ${c.flavor} manifest`);
  }
  const json = {
    schemaVersion: 2,
    mediaType: flavor === 'oci' ? mediaTypes.ociIndex : mediaTypes.dockerManifestList,
    manifests: children.map((c) => ({
      ...descriptor(c.manifest),
      platform: { architecture: c.platform.architecture, os: c.platform.os, ...(c.platform.variant ? { variant: c.platform.variant } : {}) },
    })),
  };
  return { kind: 'index', flavor, manifest: blob(json.mediaType, Buffer.from(JSON.stringify(json))), children };
}

/** Every blob (configs and layers) an artifact needs, each once. */
export function blobsOf(a: Built): Blob[] {
  const images = a.kind === 'image' ? [a] : a.children;
  const out = new Map<string, Blob>();
  for (const i of images) {
    for (const l of i.layers) out.set(l.blob.digest, l.blob);
    out.set(i.config.digest, i.config);
  }
  return [...out.values()];
}
