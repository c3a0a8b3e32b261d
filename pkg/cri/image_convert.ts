import type { Image } from '../../proto/types.js';
import type { ImageRecord } from '../image/image_store.js';

// An image record as the CRI Image message. The user comes from the image
// config's USER: a number is the uid, a name is the username (the group part
// after ':' is the runtime's business at container creation), as kubelet
// expects for runAsNonRoot checks.

export function toCriImage(r: ImageRecord): Image {
  const user = (r.config.config?.User ?? '').split(':')[0] ?? '';
  const numeric = /^\d+$/.test(user);
  return {
    id: r.id,
    repoTags: r.repoTags,
    repoDigests: r.repoDigests,
    size: String(r.size),
    ...(numeric ? { uid: { value: user } } : {}),
    username: numeric ? '' : user,
    spec: { image: r.id, annotations: {} },
    pinned: false,
  };
}
