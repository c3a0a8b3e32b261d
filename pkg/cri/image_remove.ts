import type { RemoveImageRequest__Output, RemoveImageResponse } from '../../proto/types.js';
import type { CriContext } from './context.js';

// RemoveImage by id, tag or digest removes the whole image with all its tags
// (api.proto); an image that is already gone is success (idempotent).
export async function removeImage(req: RemoveImageRequest__Output, ctx: CriContext): Promise<RemoveImageResponse> {
  await ctx.images.remove(req.image?.image ?? '');
  return {};
}
