import { buildCatalog } from '../../test/images/catalog.js';
import { RegistryPusher } from '../../test/images/registry_push.js';

// The pods' images, from the test bed's catalog (test/images/catalog.ts, built
// from Debian's busybox-static) and pushed to the test registry if it lacks
// them: usernode/busybox for the containers, and the pause stand-in that
// containerd needs as its sandbox image (usernode runs no pause process).

export interface PodImages {
  busybox: string;
  pause: string;
}

export async function pushPodImages(registry: string): Promise<PodImages & { uploaded: number; skipped: number }> {
  const catalog = await buildCatalog({ busybox: process.env.USERNODE_BUSYBOX ?? '/bin/busybox' });
  const pusher = new RegistryPusher({ host: registry });
  const refs: Partial<PodImages> = {};
  for (const [key, repository, tag] of [['busybox', 'usernode/busybox', 'latest'], ['pause', 'pause', '3.9']] as const) {
    const p = catalog.find((x) => x.repository === repository && x.tags.includes(tag) && x.registry === 'plain');
    if (!p) throw new Error(`the test image catalog has no ${repository}:${tag}`);
    const digest = await pusher.push(p.repository, [tag], p.artifact);
    if (digest !== p.artifact.manifest.digest) throw new Error(`the registry reports ${digest} for ${repository}:${tag}, not ${p.artifact.manifest.digest}`);
    refs[key] = `${registry}/${repository}:${tag}`;
  }
  return { busybox: refs.busybox!, pause: refs.pause!, uploaded: pusher.stats.uploaded, skipped: pusher.stats.skipped };
}
