import type { ImportImageRequest__Output } from '../../proto/generated/usernode/v1/ImportImageRequest.js';
import type { ImportImageResponse } from '../../proto/generated/usernode/v1/ImportImageResponse.js';
import { invalidArgument } from '../errdefs/errors.js';
import type { CriContext } from './context.js';

// usernode.v1.ImageAdmin/ImportImage: `usernode image import` and
// `usernode image build-rootfs` land here, so offline images go through the
// same verification, unpacking and records as pulled ones.
export async function importImage(req: ImportImageRequest__Output, ctx: CriContext, signal: AbortSignal): Promise<ImportImageResponse> {
  if (!req.path.startsWith('/')) throw invalidArgument(`path must be absolute, got "${req.path}"`, { field: 'path' });
  const records = await ctx.images.importLayout(req.path, req.name === '' ? undefined : req.name, signal);
  return { images: records.map((r) => ({ id: r.id, repoTags: r.repoTags, repoDigests: r.repoDigests })) };
}
