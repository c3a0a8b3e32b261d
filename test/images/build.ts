import { mkdir, writeFile } from 'node:fs/promises';
import { join, resolve } from 'node:path';
import { parseArgs } from 'node:util';

import { buildCatalog, type Publication } from './catalog.js';
import { criUser, type TestImage, type TestImagesFile, type TestLayer } from './images_file.js';
import { platformString, type BuiltImage } from './oci.js';
import { RegistryPusher } from './registry_push.js';

// Builds the test bed's images and pushes them to its registries, then writes
// <out>/images.json (what was pushed, for tests) and <out>/critest-images.yaml
// (for critest --test-images-file). Run by scripts/test.sh as the test user:
//   node dist/test/images/build.js --registry HOST:PORT --auth-registry HOST:PORT --auth-user USER:PASSWORD --out DIR

const usage = 'usage: build.js --registry HOST:PORT --auth-registry HOST:PORT --auth-user USER:PASSWORD --out DIR [--busybox /bin/busybox]';

const layersOf = (i: BuiltImage): TestLayer[] => i.layers.map((l) => ({ mediaType: l.blob.mediaType, digest: l.blob.digest, diffId: l.diffId, size: l.blob.size }));

function describe(p: Publication, host: string, tag: string): TestImage {
  const a = p.artifact;
  const amd64 = a.kind === 'image' ? a : a.children.find((c) => c.platform.architecture === 'amd64' && !c.platform.variant);
  if (!amd64) throw new Error(`${p.repository} has no linux/amd64 image`);
  const user = amd64.run.User ?? '';
  return {
    reference: `${host}/${p.repository}:${tag}`,
    registry: host,
    repository: p.repository,
    tag,
    auth: p.registry === 'auth',
    role: p.role,
    mediaType: a.manifest.mediaType,
    manifestDigest: a.manifest.digest,
    platformManifestDigest: amd64.manifest.digest,
    configDigest: amd64.config.digest,
    layers: layersOf(amd64),
    user,
    ...criUser(user),
    ...(a.kind === 'index'
      ? {
          platforms: a.children.map((c) => ({
            platform: platformString(c.platform),
            mediaType: c.manifest.mediaType,
            manifestDigest: c.manifest.digest,
            configDigest: c.config.digest,
            layers: layersOf(c),
          })),
        }
      : {}),
    ...(p.upstream ? { upstream: p.upstream } : {}),
    ...(p.expect ? { expect: p.expect } : {}),
  };
}

async function main(): Promise<void> {
  const { values } = parseArgs({
    options: {
      registry: { type: 'string' },
      'auth-registry': { type: 'string' },
      'auth-user': { type: 'string' },
      out: { type: 'string' },
      busybox: { type: 'string', default: '/bin/busybox' },
    },
    strict: true,
  });
  const registry = values.registry;
  const authRegistry = values['auth-registry'];
  const authUser = values['auth-user'];
  if (!registry || !authRegistry || !authUser || !values.out) throw new Error(usage);
  if (!authUser.includes(':')) throw new Error(`--auth-user must be USER:PASSWORD\n${usage}`);
  const out = resolve(values.out);
  const started = Date.now();

  const catalog = await buildCatalog({ busybox: values.busybox ?? '/bin/busybox' });
  const built = Date.now();

  const pushers = {
    plain: new RegistryPusher({ host: registry }),
    auth: new RegistryPusher({ host: authRegistry, credentials: authUser }),
  };
  const pushOne = async (p: Publication): Promise<void> => {
    const digest = await pushers[p.registry].push(p.repository, p.tags, p.artifact);
    if (digest !== p.artifact.manifest.digest) throw new Error(`${p.repository}: the registry reports ${digest}, not ${p.artifact.manifest.digest}`);
  };
  // The first repository of each registry alone, so the others mount the blobs they share (busybox) instead of uploading them again.
  const first = new Set([catalog.find((p) => p.registry === 'plain'), catalog.find((p) => p.registry === 'auth')]);
  for (const p of first) if (p) await pushOne(p);
  const rest = catalog.filter((p) => !first.has(p));
  await Promise.all(
    Array.from({ length: 6 }, async () => {
      for (let p = rest.shift(); p; p = rest.shift()) await pushOne(p);
    }),
  );

  const images: Record<string, TestImage> = {};
  for (const p of catalog) {
    const pusher = pushers[p.registry];
    for (const tag of p.tags) {
      const d = describe(p, pusher.target.host, tag);
      if (images[d.reference]) throw new Error(`${d.reference} is pushed twice`);
      images[d.reference] = d;
    }
  }

  await mkdir(out, { recursive: true });
  const testImagesFile = join(out, 'critest-images.yaml');
  // Fully qualified, so they work with or without a registry mirror (and without --registry-prefix, which drops tags).
  await writeFile(
    testImagesFile,
    `# critest --test-images-file: the default container and web server images, from the test registry.\n` +
      `defaultTestContainerImage: ${registry}/e2e-test-images/busybox:1.29-2\n` +
      `webServerTestImage: ${registry}/e2e-test-images/nginx:1.14-2\n`,
  );
  const mirror = `http://${registry}`;
  const file: TestImagesFile = {
    registry,
    authRegistry,
    authUser,
    critest: {
      testImagesFile,
      mirrors: { 'gcr.io': mirror, 'registry.k8s.io': mirror, 'k8s.gcr.io': mirror },
      unavailable: {
        'gcr.io/k8s-staging-cri-tools/test-image-digest@sha256:9700f9a2f5bf2c45f2f605a0bd3bce7cf37420ec9d3ed50ac2758413308766bf':
          'a digest names exact upstream manifest bytes, which cannot be rebuilt offline; the stand-in k8s-staging-cri-tools/test-image-digest:latest has a digest of its own',
      },
    },
    images,
  };
  await writeFile(join(out, 'images.json'), `${JSON.stringify(file, null, 2)}\n`);

  const s = { plain: pushers.plain.stats, auth: pushers.auth.stats };
  console.log(
    `test images: ${Object.keys(images).length} references (${catalog.length} repositories) built in ${built - started} ms, pushed in ${Date.now() - built} ms ` +
      `(blobs uploaded ${s.plain.uploaded + s.auth.uploaded}, mounted ${s.plain.mounted + s.auth.mounted}, already there ${s.plain.skipped + s.auth.skipped}; ` +
      `manifests ${s.plain.manifests + s.auth.manifests}) → ${join(out, 'images.json')}`,
  );
}

main().catch((e: unknown) => {
  console.error(`test images: ${e instanceof Error ? e.message : String(e)}`);
  process.exit(1);
});
