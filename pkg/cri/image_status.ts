import type { ImageStatusRequest__Output, ImageStatusResponse } from '../../proto/types.js';
import type { CriContext } from './context.js';
import { toCriImage } from './image_convert.js';

// ImageStatus: an absent image is not an error — the response just has no
// image (api.proto). verbose adds what containerd gives: the chain id and the
// image config.
export async function imageStatus(req: ImageStatusRequest__Output, ctx: CriContext): Promise<ImageStatusResponse> {
  const r = ctx.images.status(req.image?.image ?? '');
  if (!r) return { image: null, info: {} };
  const info: Record<string, string> = {};
  if (req.verbose) {
    info.info = JSON.stringify({
      chainID: r.layers[r.layers.length - 1]?.chainId ?? '',
      manifestDigest: r.manifestDigest,
      snapshotter: ctx.snapshotter,
      imageSpec: r.config,
    });
  }
  return { image: toCriImage(r), info };
}
