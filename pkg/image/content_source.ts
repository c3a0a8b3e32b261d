import type { Readable } from 'node:stream';

import type { ImageReference } from './reference.js';
import type { FetchedManifest } from './registry_client.js';

/** Where an image's manifests and blobs come from: a registry, or an OCI layout on disk. */
export interface ContentSource {
  /** The manifest or index `ref` names (by its digest when it has one); verified by digest. */
  manifest(ref: ImageReference, signal?: AbortSignal): Promise<FetchedManifest>;
  /** A blob stream that fails unless its bytes match `digest` and `size`. */
  blob(digest: string, size: number, signal?: AbortSignal): Promise<Readable>;
}
