import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { gunzipSync } from 'node:zlib';
import { after, before, describe, it } from 'node:test';

import * as tar from 'tar-stream';

import { findTestImage, loadTestImages, type TestImage, type TestImagesFile } from '../images/images_file.js';
import { TestNode, type AgentProcess } from '../lib/agent.js';

// The test bed itself: the two registries scripts/testhost.sh starts in the
// test-host network namespace, and the images test/images/build.ts pushed to
// them, are what images.json says — and reachable from a node namespace.

const accept = [
  'application/vnd.oci.image.index.v1+json',
  'application/vnd.oci.image.manifest.v1+json',
  'application/vnd.docker.distribution.manifest.list.v2+json',
  'application/vnd.docker.distribution.manifest.v2+json',
].join(', ');

/** An environment variable `npm test` sets; missing is a failure, never a skip. */
function bedEnv(name: 'USERNODE_REGISTRY' | 'USERNODE_AUTH_REGISTRY' | 'USERNODE_AUTH_USER'): string {
  const v = process.env[name];
  if (!v) {
    throw new Error(`${name} is not set: run the tests with "npm test" (as root it starts the test registries with scripts/testhost.sh up and pushes the test images)`);
  }
  return v;
}

const sha256 = (b: Buffer): string => `sha256:${createHash('sha256').update(b).digest('hex')}`;

interface Descriptor {
  mediaType: string;
  digest: string;
  size: number;
  platform?: { os: string; architecture: string; variant?: string };
}
interface ManifestJson {
  mediaType: string;
  config?: Descriptor;
  layers?: Descriptor[];
  manifests?: Descriptor[];
}

describe('test bed: registries and images', () => {
  let bed: TestImagesFile;
  let registry: string;
  let authRegistry: string;
  let basic: string;
  let loaded: Promise<void> | undefined;
  // Every test calls this first, so each one fails with the reason when the bed is missing.
  const load = (): Promise<void> =>
    (loaded ??= (async () => {
      registry = bedEnv('USERNODE_REGISTRY');
      authRegistry = bedEnv('USERNODE_AUTH_REGISTRY');
      basic = `Basic ${Buffer.from(bedEnv('USERNODE_AUTH_USER')).toString('base64')}`;
      bed = await loadTestImages();
    })());

  const get = (img: Pick<TestImage, 'registry' | 'auth'>, path: string, headers: Record<string, string> = {}): Promise<Response> =>
    fetch(`http://${img.registry}/v2/${path}`, { headers: { accept, ...headers, ...(img.auth ? { authorization: basic } : {}) } });

  async function manifest(img: TestImage, reference: string): Promise<{ bytes: Buffer; json: ManifestJson; res: Response }> {
    const res = await get(img, `${img.repository}/manifests/${reference}`);
    assert.equal(res.status, 200, `GET ${img.repository}/manifests/${reference}: ${res.status}`);
    const bytes = Buffer.from(await res.arrayBuffer());
    return { bytes, json: JSON.parse(bytes.toString('utf8')) as ManifestJson, res };
  }

  it('has images.json for the registries npm test started', async () => {
    await load();
    assert.equal(bed.registry, registry);
    assert.equal(bed.authRegistry, authRegistry);
    assert.ok(Object.keys(bed.images).length > 20, 'images.json lists the test images');
  });

  it('answers GET /v2/ on the plain registry anonymously', async () => {
    await load();
    const res = await fetch(`http://${registry}/v2/`);
    assert.equal(res.status, 200);
    assert.equal(res.headers.get('docker-distribution-api-version'), 'registry/2.0');
  });

  it('rejects anonymous requests to the auth registry with a Basic challenge and accepts the credentials', async () => {
    await load();
    const anon = await fetch(`http://${authRegistry}/v2/`);
    assert.equal(anon.status, 401);
    assert.match(anon.headers.get('www-authenticate') ?? '', /^Basic realm="[^"]+"/);
    const wrong = await fetch(`http://${authRegistry}/v2/`, { headers: { authorization: `Basic ${Buffer.from('usernode:wrong').toString('base64')}` } });
    assert.equal(wrong.status, 401);
    const ok = await fetch(`http://${authRegistry}/v2/`, { headers: { authorization: basic } });
    assert.equal(ok.status, 200);

    const priv = findTestImage(bed, 'usernode/private', 'latest', true);
    const anonManifest = await fetch(`http://${authRegistry}/v2/${priv.repository}/manifests/${priv.tag}`, { headers: { accept } });
    assert.equal(anonManifest.status, 401, 'the private image is not served anonymously');
    assert.equal((await fetch(`http://${registry}/v2/${priv.repository}/manifests/${priv.tag}`, { headers: { accept } })).status, 404, 'nor by the plain registry');
  });

  it('serves every image in images.json by tag with the manifest digest, config and layers it lists', async () => {
    await load();
    for (const img of Object.values(bed.images)) {
      const { bytes, json, res } = await manifest(img, img.tag);
      const what = img.reference;
      assert.equal(sha256(bytes), img.manifestDigest, `${what}: manifest digest`);
      assert.equal(res.headers.get('docker-content-digest'), img.manifestDigest, `${what}: Docker-Content-Digest`);
      assert.equal(res.headers.get('content-type'), img.mediaType, `${what}: Content-Type`);
      assert.equal(json.mediaType, img.mediaType, `${what}: mediaType`);

      let platform = json;
      if (img.platforms) {
        assert.deepEqual(
          json.manifests?.map((m) => m.digest),
          img.platforms.map((p) => p.manifestDigest),
          `${what}: index entries`,
        );
        platform = (await manifest(img, img.platformManifestDigest)).json;
      } else {
        assert.equal(img.platformManifestDigest, img.manifestDigest, `${what}: an image is its own platform manifest`);
      }
      assert.equal(platform.config?.digest, img.configDigest, `${what}: config digest (the image id)`);
      assert.deepEqual(
        platform.layers?.map((l) => l.digest),
        img.layers.map((l) => l.digest),
        `${what}: layers`,
      );

      const config = await get(img, `${img.repository}/blobs/${img.configDigest}`);
      assert.equal(config.status, 200, `${what}: config blob`);
      const configBytes = Buffer.from(await config.arrayBuffer());
      assert.equal(sha256(configBytes), img.configDigest, `${what}: config bytes`);
      const cfg = JSON.parse(configBytes.toString('utf8')) as { architecture: string; os: string; config: { User?: string }; rootfs: { diff_ids: string[] } };
      assert.equal(`${cfg.os}/${cfg.architecture}`, 'linux/amd64', `${what}: the platform a pull on this host gets`);
      assert.equal(cfg.config.User ?? '', img.user, `${what}: User`);
      assert.deepEqual(cfg.rootfs.diff_ids, img.layers.map((l) => l.diffId), `${what}: diff_ids`);
      for (const l of img.layers) {
        const head = await fetch(`http://${img.registry}/v2/${img.repository}/blobs/${l.digest}`, {
          method: 'HEAD',
          headers: img.auth ? { authorization: basic } : {},
        });
        assert.equal(head.status, 200, `${what}: layer ${l.digest}`);
        assert.equal(Number(head.headers.get('content-length')), l.size, `${what}: layer ${l.digest} size`);
      }
    }
  });

  it('has the multiarch index with three distinct platform manifests', async () => {
    await load();
    const img = findTestImage(bed, 'usernode/multiarch');
    const { json } = await manifest(img, img.tag);
    assert.equal(json.mediaType, 'application/vnd.oci.image.index.v1+json');
    const platforms = (json.manifests ?? []).map((m) => [m.platform?.os, m.platform?.architecture, m.platform?.variant].filter(Boolean).join('/'));
    assert.deepEqual(platforms, ['linux/amd64', 'linux/arm64', 'linux/arm/v7']);
    const digests = new Set(json.manifests?.map((m) => m.digest));
    assert.equal(digests.size, 3, 'each platform has its own manifest');
    for (const m of json.manifests ?? []) {
      const arch = (await manifest(img, m.digest)).json;
      const cfg = JSON.parse(Buffer.from(await (await get(img, `${img.repository}/blobs/${arch.config!.digest}`)).arrayBuffer()).toString('utf8')) as {
        architecture: string;
        variant?: string;
      };
      assert.equal(cfg.architecture, m.platform?.architecture, `config of ${m.digest}`);
      assert.equal(cfg.variant, m.platform?.variant, `variant of ${m.digest}`);
    }
  });

  it("has the hostile image's second layer with ../escape and a file written through the evil symlink", async () => {
    await load();
    const img = findTestImage(bed, 'usernode/hostile');
    const layer = img.layers[1];
    assert.ok(layer, 'the hostile image has a second layer');
    const res = await get(img, `${img.repository}/blobs/${layer.digest}`);
    assert.equal(res.status, 200);
    const entries: { name: string; type: string; linkname: string }[] = [];
    const extract = tar.extract();
    const done = new Promise<void>((resolve, reject) => {
      extract.on('entry', (h, stream, next) => {
        entries.push({ name: h.name, type: h.type ?? '', linkname: h.linkname ?? '' });
        stream.on('end', () => next());
        stream.resume();
      });
      extract.on('finish', resolve);
      extract.on('error', reject);
    });
    extract.end(gunzipSync(Buffer.from(await res.arrayBuffer())));
    await done;
    assert.deepEqual(entries, [
      { name: '../escape', type: 'file', linkname: '' },
      { name: 'evil', type: 'symlink', linkname: '../../../../../tmp' },
      { name: 'evil/usernode-pwned', type: 'file', linkname: '' },
    ]);
  });

  it("matches what critest's image specs expect of its images", async () => {
    await load();
    const ids = (repos: string[], tag = 'latest'): string[] => repos.map((r) => findTestImage(bed, `k8s-staging-cri-tools/${r}`, tag).configDigest);
    assert.equal(new Set(ids(['test-image-1', 'test-image-2', 'test-image-3'])).size, 3, 'test-image-1..3 are three different images');
    const tags = ['1', '2', '3'].map((t) => findTestImage(bed, 'k8s-staging-cri-tools/test-image-tags', t));
    assert.equal(new Set(tags.map((t) => t.manifestDigest)).size, 1, 'test-image-tags:1..3 are one image');
    assert.notEqual(findTestImage(bed, 'k8s-staging-cri-tools/test-image-tag', 'test').configDigest, findTestImage(bed, 'k8s-staging-cri-tools/test-image-tag', 'all').configDigest);
    const users: [string, number | null, string][] = [
      ['test-image-user-uid', 1002, ''],
      ['test-image-user-username', null, 'www-data'],
      ['test-image-user-uid-group', 1003, ''],
      ['test-image-user-username-group', null, 'www-data'],
      ['test-image-predefined-group', 1000, ''],
    ];
    for (const [repo, uid, username] of users) {
      const img = findTestImage(bed, `k8s-staging-cri-tools/${repo}`);
      assert.equal(img.uid, uid, `${repo} uid`);
      assert.equal(img.username, username, `${repo} username`);
    }
    const pause = findTestImage(bed, 'pause', '3.9');
    assert.ok(pause.upstream?.includes('registry.k8s.io/pause:3.9') && pause.upstream.includes('k8s.gcr.io/pause:3.9'), 'one pause image for both registries');
    for (const [repo, tag] of [
      ['e2e-test-images/busybox', '1.29-2'],
      ['e2e-test-images/nginx', '1.14-2'],
      ['e2e-test-images/httpd', '2.4.39-4'],
      ['k8s-staging-cri-tools/hostnet-nginx-amd64', 'latest'],
      ['k8s-staging-cri-tools/test-image-latest', 'latest'],
    ] as const) {
      findTestImage(bed, repo, tag);
    }
  });

  describe('from inside a node namespace', () => {
    let node: TestNode;
    let agent: AgentProcess;

    before(async () => {
      await load();
      node = await TestNode.create();
      agent = node.start();
      await agent.ready();
    });

    after(async () => {
      agent?.child.kill('SIGTERM');
      await node?.destroy();
    });

    it('reaches both registries through slirp4netns', async () => {
      const script = `Promise.all(process.argv.slice(1).map(u=>fetch(u).then(r=>r.status,e=>'ERR '+(e.cause?.code??e.message)))).then(s=>console.log(s.join(' ')))`;
      const r = await node.enter([process.execPath, '-e', script, `http://${registry}/v2/`, `http://${authRegistry}/v2/`]);
      assert.equal(r.code, 0, r.stderr);
      assert.equal(r.stdout.trim(), '200 401');
    });
  });
});
