import { createCipheriv, createHash } from 'node:crypto';

import { dir, file, image, LayerCompressor, layerMediaType, sha256, tarball, type BuiltImage, type Layer, type LayerEntry } from '../../test/images/oci.js';

// The benchmark's image: `layers` gzip layers of pseudo-random (incompressible)
// bytes, the same bytes for the same seed on every machine and run (an AES-256-CTR
// keystream keyed by sha256(seed, layer, file)), so its digests never change and a
// registry that already holds it skips the upload. Each layer has one big file,
// a few medium ones and many small ones, so unpacking pays per-file costs too.

export interface RandomImageOptions {
  seed: string;
  layers: number;
  /** Bytes of file content per layer (split as 40% one file, 40% eight files, 20% 16 KiB files). */
  layerBytes: number;
}

export interface RandomImage {
  built: BuiltImage;
  /** Compressed bytes of all layers (what a pull downloads, besides the manifest and config). */
  compressedBytes: number;
  /** Uncompressed tar bytes of all layers. */
  uncompressedBytes: number;
  /** Regular files in all layers. */
  files: number;
}

/** `n` deterministic pseudo-random bytes for `label` under `seed`. */
export function randomBytesFor(seed: string, label: string, n: number): Buffer {
  const key = createHash('sha256').update(`${seed}\0${label}`).digest();
  const cipher = createCipheriv('aes-256-ctr', key, Buffer.alloc(16));
  return Buffer.concat([cipher.update(Buffer.alloc(n)), cipher.final()]);
}

const smallFileBytes = 16 * 1024;
const mediumFiles = 8;

function layerEntries(seed: string, n: number, layerBytes: number): LayerEntry[] {
  const root = `bench/layer${n}`;
  const big = Math.floor(layerBytes * 0.4);
  const medium = Math.floor((layerBytes * 0.4) / mediumFiles);
  const small = Math.max(1, Math.floor((layerBytes - big - medium * mediumFiles) / smallFileBytes));
  const entries: LayerEntry[] = [dir('bench'), dir(root), dir(`${root}/medium`), dir(`${root}/small`)];
  entries.push(file(`${root}/big.bin`, randomBytesFor(seed, `${n}/big`, big)));
  for (let i = 0; i < mediumFiles; i++) entries.push(file(`${root}/medium/m${String(i).padStart(2, '0')}.bin`, randomBytesFor(seed, `${n}/m${i}`, medium)));
  for (let i = 0; i < small; i++) entries.push(file(`${root}/small/s${String(i).padStart(4, '0')}.bin`, randomBytesFor(seed, `${n}/s${i}`, smallFileBytes)));
  return entries;
}

export async function buildRandomImage(o: RandomImageOptions): Promise<RandomImage> {
  const compressor = new LayerCompressor();
  const layers: Layer[] = [];
  let uncompressedBytes = 0;
  let files = 0;
  for (let n = 0; n < o.layers; n++) {
    const entries = layerEntries(o.seed, n, o.layerBytes);
    files += entries.filter((e) => e.type === 'file').length;
    const tarBytes = await tarball(entries);
    uncompressedBytes += tarBytes.length;
    const { bytes, diffId } = compressor.compress(tarBytes, 'gzip');
    layers.push({ blob: { mediaType: layerMediaType('oci', 'gzip'), digest: sha256(bytes), size: bytes.length, bytes }, diffId, compression: 'gzip' });
  }
  const built = image(
    'oci',
    { os: 'linux', architecture: 'amd64' },
    layers,
    { Env: ['PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin'], Labels: { 'org.usernode.bench-image': `${o.seed}/${o.layers}x${o.layerBytes}` } },
    layers.map((_, n) => `random data: /bench/layer${n} (seed ${o.seed})`),
  );
  return { built, compressedBytes: layers.reduce((s, l) => s + l.blob.size, 0), uncompressedBytes, files };
}
