import type { ListImagesRequest__Output, ListImagesResponse } from '../../proto/types.js';
import type { CriContext } from './context.js';
import { toCriImage } from './image_convert.js';

// ListImages, optionally filtered to the image one reference (tag, digest or id) names.
export async function listImages(req: ListImagesRequest__Output, ctx: CriContext): Promise<ListImagesResponse> {
  return { images: ctx.images.list(req.filter?.image?.image ?? '').map(toCriImage) };
}
