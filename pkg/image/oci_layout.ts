import { createHash } from 'node:crypto';
import { createReadStream, createWriteStream } from 'node:fs';
import { mkdir, mkdtemp, readFile, rm, stat } from 'node:fs/promises';
import { dirname, join, normalize } from 'node:path';
import type { Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';

import { extract } from 'tar-stream';

import { DomainError, invalidArgument, notFound } from '../errdefs/errors.js';
import type { ContentSource } from './content_source.js';
import type { ImageIndex } from './media_types.js';
import { formatReference, type ImageReference, parseReference } from './reference.js';
import { DigestVerifier, type FetchedManifest } from './registry_client.js';

// OCI image layouts (image-spec image-layout.md) as an image source, for
// nodes without a registry: a folder with oci-layout, index.json and
// blobs/<alg>/<hex>, or the same as a tar. Every blob is verified against its
// digest as it is read, exactly as a registry pull is.

export const refNameAnnotation = 'org.opencontainers.image.ref.name';
const containerdNameAnnotation = 'io.containerd.image.name';

export interface OpenedLayout {
  dir: string;
  /** Removes the temporary folder a tar was unpacked to; no-op for a folder. */
  close(): Promise<void>;
}

/** A layout folder as is, or a layout tar unpacked (safely) under `scratch`. */
export async function openLayout(path: string, scratch: string): Promise<OpenedLayout> {
  let st;
  try {
    st = await stat(path);
  } catch {
    throw notFound(`${path} does not exist`, { field: 'path' });
  }
  if (st.isDirectory()) {
    await checkLayout(path);
    return { dir: path, close: async () => {} };
  }
  await mkdir(scratch, { recursive: true, mode: 0o700 });
  const dir = await mkdtemp(join(scratch, 'import-'));
  try {
    await untarLayout(path, dir);
    await checkLayout(dir);
  } catch (e: unknown) {
    await rm(dir, { recursive: true, force: true });
    throw e;
  }
  return { dir, close: () => rm(dir, { recursive: true, force: true }) };
}

async function checkLayout(dir: string): Promise<void> {
  let layout: { imageLayoutVersion?: string };
  try {
    layout = JSON.parse(await readFile(join(dir, 'oci-layout'), 'utf8')) as { imageLayoutVersion?: string };
  } catch {
    throw invalidArgument(`${dir} is not an OCI image layout (no readable oci-layout file)`, { field: 'path' });
  }
  if (layout.imageLayoutVersion !== '1.0.0') throw invalidArgument(`${dir}: unsupported imageLayoutVersion ${JSON.stringify(layout.imageLayoutVersion)}`, { field: 'path' });
}

/** Only oci-layout, index.json and blobs/<alg>/<hex> files; anything else is refused. */
async function untarLayout(tarPath: string, dir: string): Promise<void> {
  const ex = extract();
  const done = new Promise<void>((resolve, reject) => {
    ex.on('entry', (header, stream, next) => {
      // Destroying the extractor errors the open entry too; the extractor's error is the one reported.
      stream.on('error', () => {});
      const name = normalize(header.name).replace(/^\.\/+/, '').replace(/\/+$/, '');
      const allowedFile = name === 'oci-layout' || name === 'index.json' || /^blobs\/[a-z0-9]+\/[a-f0-9]{32,128}$/.test(name);
      const allowedDir = name === '' || name === '.' || name === 'blobs' || /^blobs\/[a-z0-9]+$/.test(name);
      if (header.type === 'directory' && allowedDir) {
        stream.resume();
        stream.on('end', next);
        return;
      }
      if (header.type !== 'file' || !allowedFile) {
        stream.resume();
        ex.destroy(invalidArgument(`layout tar entry "${header.name}" (${header.type}) is not part of an OCI image layout`, { field: header.name }));
        return;
      }
      const target = join(dir, name);
      void mkdir(dirname(target), { recursive: true })
        .then(() => pipeline(stream, createWriteStream(target, { mode: 0o600 })))
        .then(() => next(), (e: unknown) => ex.destroy(e as Error));
    });
    ex.on('finish', resolve);
    ex.on('error', reject);
  });
  const [piped, extracted] = await Promise.allSettled([pipeline(createReadStream(tarPath), ex), done]);
  const failure = extracted.status === 'rejected' ? extracted.reason : piped.status === 'rejected' ? piped.reason : undefined;
  if (failure !== undefined) {
    if (failure instanceof DomainError) throw failure;
    throw invalidArgument(`${tarPath} is not a readable layout tar: ${(failure as Error).message}`, { field: 'path' });
  }
}

export interface LayoutImage {
  ref: ImageReference;
}

/**
 * The images a layout's index.json names, each as a reference pinned to its
 * manifest digest. `name` names an image that carries no usable name of its own
 * (only a bare tag or none), or renames the only one.
 */
export async function layoutImages(dir: string, name: string | undefined): Promise<LayoutImage[]> {
  let index: ImageIndex;
  try {
    index = JSON.parse(await readFile(join(dir, 'index.json'), 'utf8')) as ImageIndex;
  } catch (e: unknown) {
    throw invalidArgument(`${dir}/index.json is missing or not JSON: ${(e as Error).message}`, { field: 'path' });
  }
  const entries = index.manifests ?? [];
  if (entries.length === 0) throw invalidArgument(`${dir}/index.json lists no images`, { field: 'path' });
  if (name !== undefined && entries.length > 1) throw invalidArgument(`the layout holds ${entries.length} images; --name can only name a layout with one`, { field: '--name' });
  return entries.map((e) => {
    const annotated = e.annotations?.[containerdNameAnnotation] ?? e.annotations?.[refNameAnnotation];
    let full = name;
    if (full === undefined) {
      if (annotated === undefined) throw invalidArgument(`image ${e.digest} in the layout has no name; give one with --name`, { field: '--name' });
      // A ref.name that is only a tag ("latest") names no repository.
      // (containerd reads a ref.name with none of / : @ as a tag, e.g. "1.36" or "v1.0").
      if (!/[/:@]/.test(annotated)) {
        throw invalidArgument(`image ${e.digest} is named only "${annotated}"; give a full name with --name`, { field: '--name' });
      }
      full = annotated;
    }
    const ref = parseReference(full, name !== undefined ? '--name' : refNameAnnotation);
    return { ref: { ...ref, digest: e.digest, tag: ref.tag ?? (ref.digest === undefined ? 'latest' : undefined) } };
  });
}

export function layoutSource(dir: string): ContentSource {
  const blobPath = (digest: string): string => {
    const [alg, hex] = digest.split(':');
    if (!alg || !hex || !/^[a-z0-9]+$/.test(alg) || !/^[a-f0-9]+$/.test(hex)) throw invalidArgument(`not a digest: ${digest}`, { field: 'digest' });
    return join(dir, 'blobs', alg, hex);
  };
  return {
    manifest: async (ref: ImageReference): Promise<FetchedManifest> => {
      if (ref.digest === undefined) throw invalidArgument(`${formatReference(ref)}: a layout is read by digest`, { field: 'image' });
      let bytes: Buffer;
      try {
        bytes = await readFile(blobPath(ref.digest));
      } catch {
        throw notFound(`blob ${ref.digest} is missing from the layout`, { field: 'path' });
      }
      const got = `sha256:${createHash('sha256').update(bytes).digest('hex')}`;
      if (got !== ref.digest) throw invalidArgument(`layout blob ${ref.digest} does not match its digest: got ${got}`, { field: 'digest' });
      const mediaType = (JSON.parse(bytes.toString('utf8')) as { mediaType?: string }).mediaType;
      if (!mediaType) throw invalidArgument(`layout manifest ${ref.digest} has no mediaType`, { field: 'image' });
      return { bytes, mediaType, digest: got };
    },
    blob: async (digest: string, size: number): Promise<Readable> => {
      const p = blobPath(digest);
      try {
        await stat(p);
      } catch {
        throw notFound(`blob ${digest} is missing from the layout`, { field: 'path' });
      }
      return createReadStream(p).pipe(new DigestVerifier(digest, size, `layout blob ${digest}`));
    },
  };
}
