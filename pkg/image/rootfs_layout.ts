import { createHash } from 'node:crypto';
import { createReadStream, createWriteStream } from 'node:fs';
import { lstat, mkdir, readdir, readlink, rename, writeFile } from 'node:fs/promises';
import { join, relative } from 'node:path';
import { Transform } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { createGzip } from 'node:zlib';

import { pack } from 'tar-stream';

import { invalidArgument } from '../errdefs/errors.js';
import type { Logger } from '../log/logger.js';
import { mediaTypes, nodePlatform } from './media_types.js';
import { refNameAnnotation } from './oci_layout.js';
import { formatReference, parseReference } from './reference.js';

// `usernode image build-rootfs DIR NAME`: a one-layer OCI image of a folder,
// written as an OCI layout, for a node that has no registry. Files keep their
// modes, links and times; ownership becomes root's, as rootless image builders
// do, since the user's own files are uid 0 inside the node.

export interface RootfsImage {
  name: string;
  manifestDigest: string;
  configDigest: string;
  entries: number;
  skipped: string[];
}

export async function writeRootfsLayout(rootfs: string, outDir: string, name: string, log: Logger): Promise<RootfsImage> {
  const ref = parseReference(name, 'NAME');
  const st = await lstat(rootfs).catch(() => undefined);
  if (!st?.isDirectory()) throw invalidArgument(`${rootfs} is not a folder`, { field: 'DIR' });
  const blobs = join(outDir, 'blobs', 'sha256');
  await mkdir(blobs, { recursive: true });

  const tar = pack();
  const tmpLayer = join(outDir, 'layer.tmp');
  const diffHash = createHash('sha256');
  const blobHash = createHash('sha256');
  let blobSize = 0;
  const tap = (h: ReturnType<typeof createHash>, count?: (n: number) => void): Transform =>
    new Transform({
      transform(c: Buffer, _e, cb) {
        h.update(c);
        count?.(c.length);
        cb(null, c);
      },
    });
  const writing = pipeline(tar, tap(diffHash), createGzip(), tap(blobHash, (n) => (blobSize += n)), createWriteStream(tmpLayer));
  const skipped: string[] = [];
  let entries = 0;

  const add = (header: Parameters<typeof tar.entry>[0], body?: string): Promise<void> =>
    new Promise((resolve, reject) => {
      tar.entry(header, body ?? '', (e) => (e ? reject(e) : resolve()));
    });

  const walk = async (dir: string): Promise<void> => {
    for (const n of (await readdir(dir)).sort()) {
      const p = join(dir, n);
      const rel = relative(rootfs, p);
      const s = await lstat(p);
      const common = { name: rel, mode: s.mode & 0o7777, mtime: s.mtime, uid: 0, gid: 0 };
      if (s.isDirectory()) {
        await add({ ...common, type: 'directory' });
        entries++;
        await walk(p);
      } else if (s.isSymbolicLink()) {
        await add({ ...common, type: 'symlink', linkname: await readlink(p) });
        entries++;
      } else if (s.isFile()) {
        const entry = tar.entry({ ...common, type: 'file', size: s.size });
        await pipeline(createReadStream(p), entry as unknown as NodeJS.WritableStream);
        entries++;
      } else {
        skipped.push(rel);
        log.warn('build-rootfs: skipping a special file', { path: rel });
      }
    }
  };
  await walk(rootfs);
  tar.finalize();
  await writing;

  const diffId = `sha256:${diffHash.digest('hex')}`;
  const layerDigest = `sha256:${blobHash.digest('hex')}`;
  await rename(tmpLayer, join(blobs, layerDigest.slice(7)));

  const platform = nodePlatform();
  const config = Buffer.from(
    JSON.stringify({
      architecture: platform.architecture,
      os: platform.os,
      ...(platform.variant ? { variant: platform.variant } : {}),
      created: new Date(0).toISOString(),
      config: { Env: ['PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin'], Cmd: ['/bin/sh'] },
      rootfs: { type: 'layers', diff_ids: [diffId] },
      history: [{ created: new Date(0).toISOString(), created_by: `usernode image build-rootfs ${rootfs}` }],
    }),
  );
  const configDigest = await writeBlob(blobs, config);
  const manifest = Buffer.from(
    JSON.stringify({
      schemaVersion: 2,
      mediaType: mediaTypes.ociManifest,
      config: { mediaType: mediaTypes.ociConfig, digest: configDigest, size: config.length },
      layers: [{ mediaType: mediaTypes.ociLayerGzip, digest: layerDigest, size: blobSize }],
    }),
  );
  const manifestDigest = await writeBlob(blobs, manifest);
  const full = formatReference({ ...ref, digest: undefined });
  await writeFile(
    join(outDir, 'index.json'),
    JSON.stringify({
      schemaVersion: 2,
      mediaType: mediaTypes.ociIndex,
      manifests: [{ mediaType: mediaTypes.ociManifest, digest: manifestDigest, size: manifest.length, annotations: { [refNameAnnotation]: full } }],
    }),
  );
  await writeFile(join(outDir, 'oci-layout'), JSON.stringify({ imageLayoutVersion: '1.0.0' }));
  return { name: full, manifestDigest, configDigest, entries, skipped };
}

async function writeBlob(dir: string, bytes: Buffer): Promise<string> {
  const digest = `sha256:${createHash('sha256').update(bytes).digest('hex')}`;
  await writeFile(join(dir, digest.slice(7)), bytes);
  return digest;
}
