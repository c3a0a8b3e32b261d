import type { PullImageRequest__Output, PullImageResponse } from '../../proto/types.js';
import { invalidArgument } from '../errdefs/errors.js';
import type { Credentials } from '../image/registry_client.js';
import type { CriContext } from './context.js';
import { checkAuthConfig } from './validate.js';

// PullImage: fetch, verify and unpack; the response names the image id, as
// containerd answers.
export async function pullImage(req: PullImageRequest__Output, ctx: CriContext, signal: AbortSignal): Promise<PullImageResponse> {
  const image = req.image?.image ?? '';
  if (image === '') throw invalidArgument('an image reference is required', { field: 'image.image' });
  const a = req.auth;
  if (a) checkAuthConfig(a);
  const creds: Credentials | undefined = a
    ? {
        ...(a.username ? { username: a.username } : {}),
        ...(a.password ? { password: a.password } : {}),
        ...(a.auth ? { auth: a.auth } : {}),
        ...(a.identityToken ? { identityToken: a.identityToken } : {}),
        ...(a.registryToken ? { registryToken: a.registryToken } : {}),
      }
    : undefined;
  const record = await ctx.images.pull(image, creds, signal);
  return { imageRef: record.id };
}
