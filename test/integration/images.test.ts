import assert from 'node:assert/strict';
import { existsSync, readFileSync } from 'node:fs';
import { chmod, copyFile, mkdir, readdir, stat, symlink, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';

import * as grpc from '@grpc/grpc-js';

import { writeRootfsLayout } from '../../pkg/image/rootfs_layout.js';
import { silentLogger } from '../../pkg/log/logger.js';
import { criClients } from '../../proto/client.js';
import { type AgentProcess, exec, requiredEnv, requiredTool, TestNode } from '../lib/agent.js';
import { FakeRegistry, layerOf } from '../lib/fake_registry.js';

// Images end to end: the real agent, as this unprivileged user, pulls from
// the real docker-registry instances in the test-host network namespace
// (reached through slirp4netns, as any remote registry), and from a
// misbehaving registry for the faults; crictl and critest drive it.

interface ImageEntry {
  reference: string;
  manifestDigest: string;
  platformManifestDigest?: string;
  configDigest: string;
  layers: Array<{ digest: string; diffId: string; size: number }>;
  user: string;
  uid: number | null;
  username: string;
}

interface ImagesFile {
  registry: string;
  authRegistry: string;
  authUser: string;
  critest: { testImagesFile: string; mirrors: Record<string, string>; unavailable: Record<string, string> };
  images: Record<string, ImageEntry>;
}

describe('usernode images: pull, list, inspect, remove, faults, critest', () => {
  let bed: ImagesFile;
  let node: TestNode;
  let agent: AgentProcess;
  let fake: FakeRegistry;
  let bearer: FakeRegistry;
  let dataDir: string;

  const img = (ref: string): ImageEntry => {
    const e = bed.images[ref];
    assert.ok(e, `${ref} is not in the test images`);
    return e;
  };
  const reg = (path: string): string => `${bed.registry}/${path}`;
  const crictlJson = async <T>(args: string[]): Promise<T> => {
    const r = await node.crictl(args);
    assert.equal(r.code, 0, r.stderr);
    return JSON.parse(r.stdout) as T;
  };
  const listImages = async (): Promise<Array<{ id: string; repoTags: string[]; repoDigests: string[] }>> =>
    (await crictlJson<{ images: Array<{ id: string; repoTags: string[]; repoDigests: string[] }> }>(['images', '-o', 'json'])).images;
  const blobs = async (): Promise<string[]> => (await readdir(join(dataDir, 'images', 'content', 'blobs', 'sha256'))).map((h) => `sha256:${h}`);

  before(async () => {
    bed = JSON.parse(readFileSync(requiredEnv('USERNODE_TEST_IMAGES'), 'utf8')) as ImagesFile;
    node = await TestNode.create();
    dataDir = join(node.dir, 'data', 'usernode');
    fake = new FakeRegistry();
    // The host's end of the test-host veth: not loopback, so the node namespace reaches it.
    const hostSide = bed.registry.split(':')[0]!.replace(/\.\d+$/, '.1');
    await fake.listen(hostSide);
    bearer = new FakeRegistry();
    bearer.bearer = { user: 'alice', password: 'open sesame' };
    await bearer.listen(hostSide);
    const mirrors = Object.entries(bed.critest.mirrors)
      .map(([host, url]) => `  ${host}: { mirrors: ["${url}"] }`)
      .join('\n');
    await node.writeConfig(
      `registries:\n  "${bed.registry}": { plainHttp: true }\n  "${bed.authRegistry}": { plainHttp: true }\n  "${fake.address}": { plainHttp: true }\n  "${bearer.address}": { plainHttp: true }\n${mirrors}\n`,
    );
    agent = node.start();
    await agent.ready();
  });

  after(async () => {
    agent?.child.kill('SIGTERM');
    await node?.destroy();
    await fake?.close();
    await bearer?.close();
  });

  it('pulls by tag: the image id is the config digest, with its tag and repo digest', async () => {
    const e = img(reg('usernode/busybox:latest'));
    const r = await node.crictl(['pull', e.reference]);
    assert.equal(r.code, 0, r.stderr);
    assert.match(r.stdout, new RegExp(e.configDigest));
    const found = (await listImages()).find((i) => i.id === e.configDigest);
    assert.ok(found, 'pulled image not listed');
    assert.deepEqual(found.repoTags, [e.reference]);
    assert.deepEqual(found.repoDigests, [`${reg('usernode/busybox')}@${e.manifestDigest}`]);
  });

  it('pulls by digest, and inspecti shows the non-root user', async () => {
    const e = img(reg('usernode/nonroot:latest'));
    const byDigest = `${reg('usernode/nonroot')}@${e.manifestDigest}`;
    const r = await node.crictl(['pull', byDigest]);
    assert.equal(r.code, 0, r.stderr);
    const status = await crictlJson<{ status: { id: string; uid: { value: string } | null; username: string; repoDigests: string[] } }>(['inspecti', byDigest]);
    assert.equal(status.status.id, e.configDigest);
    assert.equal(status.status.uid?.value, String(e.uid));
    assert.ok(status.status.repoDigests.includes(byDigest));
  });

  it('pulls the linux/amd64 image out of a multi-arch index', async () => {
    const e = img(reg('usernode/multiarch:latest'));
    const r = await node.crictl(['pull', e.reference]);
    assert.equal(r.code, 0, r.stderr);
    assert.match(r.stdout, new RegExp(e.configDigest), 'not the amd64 config');
    type Verbose = { manifestDigest: string; snapshotter: string; imageSpec: { architecture: string } };
    const status = await crictlJson<{ status: { repoDigests: string[] }; info: Verbose | { info: Verbose } }>(['inspecti', e.reference]);
    assert.deepEqual(status.status.repoDigests, [`${reg('usernode/multiarch')}@${e.manifestDigest}`], 'the repo digest is the index digest');
    // crictl shows the verbose "info" key either nested or merged, by version.
    const info = 'info' in status.info ? status.info.info : status.info;
    assert.equal(info.manifestDigest, e.platformManifestDigest);
    assert.equal(info.imageSpec.architecture, 'amd64');
    assert.match(info.snapshotter, /^(overlayfs|copy)$/);
  });

  it('pulls Docker schema 2, zstd and multi-layer images with whiteouts', async () => {
    for (const name of ['usernode/docker-schema2:latest', 'usernode/zstd:latest', 'usernode/multilayer:latest']) {
      const e = img(reg(name));
      const r = await node.crictl(['pull', e.reference]);
      assert.equal(r.code, 0, `${name}: ${r.stderr}`);
      assert.match(r.stdout, new RegExp(e.configDigest), name);
    }
  });

  it('stores a layer once however many images use it', async () => {
    const a = img(reg('usernode/busybox:latest'));
    const b = img(reg('usernode/nonroot:latest'));
    const shared = a.layers.filter((l) => b.layers.some((m) => m.digest === l.digest));
    assert.ok(shared.length > 0, 'the test images share no layer');
    const all = await blobs();
    for (const l of shared) assert.equal(all.filter((d) => d === l.digest).length, 1);
    const layerDirs = (await readdir(join(dataDir, 'snapshots', 'layers'))).filter((n) => /^[a-f0-9]{64}$/.test(n));
    assert.ok(layerDirs.includes(shared[0]!.diffId.slice('sha256:'.length)), 'the shared base layer is not unpacked under its chain id');
  });

  it('needs credentials for the private registry: none, wrong and right ones', async () => {
    const ref = `${bed.authRegistry}/usernode/private:latest`;
    const none = await node.crictl(['pull', ref]);
    assert.notEqual(none.code, 0);
    assert.match(none.stderr, /PermissionDenied.*requires credentials/);
    const wrong = await node.crictl(['pull', '--creds', 'usernode:wrong', ref]);
    assert.notEqual(wrong.code, 0);
    assert.match(wrong.stderr, /rejected the credentials/);
    const right = await node.crictl(['pull', '--creds', bed.authUser, ref]);
    assert.equal(right.code, 0, right.stderr);
    assert.match(right.stdout, new RegExp(img(ref).configDigest));
    // The runtime cached what the right credentials earned: none of it serves a pull without them, or with others.
    const after = await node.crictl(['pull', ref]);
    assert.notEqual(after.code, 0, 'an anonymous pull succeeded after an authenticated pull of the private image');
    assert.match(after.stderr, /PermissionDenied.*requires credentials/);
    const wrongAfter = await node.crictl(['pull', '--creds', 'usernode:wrong', ref]);
    assert.notEqual(wrongAfter.code, 0, 'a pull with wrong credentials succeeded after an authenticated pull');
    assert.equal((await node.crictl(['pull', '--creds', bed.authUser, ref])).code, 0);
  });

  it('follows a Bearer challenge to the token realm, with the credentials, and is refused without them', async () => {
    {
      const pushed = await bearer.addImage('private/bearer', 'v1', [await layerOf({ 'secret.txt': 'behind a token\n' })]);
      const ref = `${bearer.address}/private/bearer:v1`;
      const denied = await node.crictl(['pull', ref]);
      assert.notEqual(denied.code, 0);
      assert.match(denied.stderr, /PermissionDenied.*token request to http:\/\/[^ ]+\/token .*failed with HTTP 401/);
      const ok = await node.crictl(['pull', '--creds', 'alice:open sesame', ref]);
      assert.equal(ok.code, 0, ok.stderr);
      assert.match(ok.stdout, new RegExp(pushed.configDigest));
      const granted = bearer.tokenRequests.filter((r) => r.ok);
      assert.ok(granted.length >= 1);
      assert.deepEqual(granted[0], { service: 'fake-registry', scope: 'repository:private/bearer:pull', ok: true });
      // The token is the credentials' own: an anonymous pull afterwards asks for one of its own and is refused.
      const again = await node.crictl(['pull', ref]);
      assert.notEqual(again.code, 0, 'an anonymous pull reused the token of an authenticated one');
      assert.match(again.stderr, /PermissionDenied/);
    }
  });

  it('answers NOT_FOUND naming an unknown image', async () => {
    const ref = reg('usernode/no-such-image:v1');
    const r = await node.crictl(['pull', ref]);
    assert.notEqual(r.code, 0);
    assert.match(r.stderr, /NotFound/);
    assert.ok(r.stderr.includes(ref), r.stderr);
  });

  it('refuses a hostile layer: the error names the entry, nothing escapes, nothing of it stays', async () => {
    const e = img(reg('usernode/hostile:latest'));
    const before = await blobs();
    const r = await node.crictl(['pull', e.reference]);
    assert.notEqual(r.code, 0);
    assert.match(r.stderr, /InvalidArgument/);
    assert.match(r.stderr, /layer entry \\?"(\.\.\/escape|evil\/usernode-pwned)\\?"/);
    assert.equal(existsSync('/tmp/usernode-pwned'), false, 'a file escaped to /tmp');
    for (const d of [join(dataDir, 'snapshots'), join(dataDir, 'snapshots', 'layers'), dataDir, node.dir]) {
      assert.equal(existsSync(join(d, 'escape')), false, `a file escaped to ${d}`);
    }
    assert.equal((await listImages()).some((i) => i.id === e.configDigest), false, 'a partial image was recorded');
    const hostileOnly = e.layers.filter((l) => !before.includes(l.digest)).map((l) => l.digest);
    const after = await blobs();
    assert.deepEqual(after.filter((d) => hostileOnly.includes(d)), [], 'blobs of the failed pull stayed in the store');
    const leftovers = (await readdir(join(dataDir, 'snapshots', 'layers'))).filter((n) => n.includes('.unpack-'));
    assert.deepEqual(leftovers, []);
  });

  it('fails a blob whose bytes do not match its digest, keeping none of it', async () => {
    const img1 = await fake.addImage('faulty/corrupt', 'v1', [await layerOf({ 'hello.txt': 'corrupted in transit\n' })]);
    fake.fault(img1.layerDigests[0]!, { kind: 'corrupt' });
    const r = await node.crictl(['pull', `${fake.address}/faulty/corrupt:v1`]);
    assert.notEqual(r.code, 0);
    assert.match(r.stderr, /does not match its digest/);
    assert.equal((await blobs()).includes(img1.layerDigests[0]!), false, 'the corrupt blob was stored');
    assert.deepEqual(await readdir(join(dataDir, 'images', 'content', 'ingest')), []);
  });

  it('survives a registry that dies mid-pull: a clear error, no partial image, and the next pull succeeds', async () => {
    const big = await layerOf({ 'data.bin': 'x'.repeat(512 * 1024) + Math.random() });
    const image = await fake.addImage('faulty/cut', 'v1', [big]);
    fake.fault(image.layerDigests[0]!, { kind: 'cut', afterBytes: Math.floor(big.blob.length / 2) });
    const ref = `${fake.address}/faulty/cut:v1`;
    const r = await node.crictl(['pull', ref]);
    assert.notEqual(r.code, 0);
    assert.match(r.stderr, /Unavailable|has \d+ bytes, not the \d+|terminated|reading blob/);
    assert.equal((await listImages()).some((i) => i.id === image.configDigest), false);
    assert.equal((await blobs()).includes(image.layerDigests[0]!), false);
    fake.fault(image.layerDigests[0]!, undefined);
    const again = await node.crictl(['pull', ref]);
    assert.equal(again.code, 0, again.stderr);
    assert.ok((await listImages()).some((i) => i.id === image.configDigest));
  });

  it('reports a full disk as RESOURCE_EXHAUSTED and keeps nothing of the pull', async () => {
    // A 256 KiB tmpfs over the content store, mounted in the node's own mount namespace.
    const content = join(dataDir, 'images', 'content');
    const m = await node.enter(['sh', '-c', `mount -t tmpfs -o size=256k tmpfs ${content} && mkdir -p ${content}/blobs/sha256 ${content}/ingest`]);
    assert.equal(m.code, 0, m.stderr);
    try {
      const r = await node.crictl(['pull', reg('usernode/docker-schema2:latest')]);
      assert.notEqual(r.code, 0);
      assert.match(r.stderr, /ResourceExhausted/);
      assert.match(r.stderr, /no space left/);
      // The tmpfs is mounted in the node's mount namespace: look from there.
      const ls = await node.enter(['ls', '-A', join(content, 'ingest')]);
      assert.equal(ls.code, 0, ls.stderr);
      assert.equal(ls.stdout.trim(), '', 'a partial ingest stayed on the full disk');
    } finally {
      const u = await node.enter(['umount', content]);
      assert.equal(u.code, 0, u.stderr);
    }
  });

  it('removes an image by one tag with all its tags, and removing again succeeds', async () => {
    const tags = ['1', '2', '3'].map((t) => reg(`k8s-staging-cri-tools/test-image-tags:${t}`));
    for (const t of tags) assert.equal((await node.crictl(['pull', t])).code, 0);
    const id = img(tags[0]!).configDigest;
    const listed = (await listImages()).find((i) => i.id === id);
    assert.deepEqual(listed?.repoTags.sort(), [...tags].sort());
    const rm = await node.crictl(['rmi', tags[1]!]);
    assert.equal(rm.code, 0, rm.stderr);
    assert.equal((await listImages()).some((i) => i.id === id), false, 'the other tags kept the image');
    const c = criClients(node.socket);
    try {
      const err = await new Promise<grpc.ServiceError | null>((res) => c.image.RemoveImage({ image: { image: tags[0]! } }, (e) => res(e)));
      assert.equal(err, null, 'RemoveImage of a removed image is not idempotent');
      const st = await new Promise<{ image: unknown }>((res, rej) => c.image.ImageStatus({ image: { image: id } }, (e, r) => (e || !r ? rej(e) : res(r))));
      assert.equal(st.image, null);
    } finally {
      c.close();
    }
  });

  it('reports the store growing in imagefsinfo', async () => {
    type Fs = { status: { imageFilesystems: Array<{ usedBytes: { value: string } }> } };
    const before = Number((await crictlJson<Fs>(['imagefsinfo'])).status.imageFilesystems[0]!.usedBytes.value);
    assert.equal((await node.crictl(['pull', reg('e2e-test-images/httpd:2.4.39-4')])).code, 0);
    const after = Number((await crictlJson<Fs>(['imagefsinfo'])).status.imageFilesystems[0]!.usedBytes.value);
    assert.ok(after > before, `image fs used bytes did not grow: ${before} → ${after}`);
  });

  it('builds a one-layer image from a folder with usernode image build-rootfs', async () => {
    const rootfs = join(node.dir, 'rootfs');
    await mkdir(join(rootfs, 'bin'), { recursive: true });
    await mkdir(join(rootfs, 'etc'));
    await copyFile('/bin/busybox', join(rootfs, 'bin', 'busybox'));
    await chmod(join(rootfs, 'bin', 'busybox'), 0o755);
    await symlink('busybox', join(rootfs, 'bin', 'sh'));
    await writeFile(join(rootfs, 'etc', 'motd'), 'built offline\n');
    const r = await node.usernode(['image', 'build-rootfs', rootfs, 'local/offline:v1']);
    assert.equal(r.code, 0, r.stderr);
    assert.match(r.stdout, /imported docker\.io\/local\/offline:v1 \(sha256:[a-f0-9]{64}\)/);
    const st = await crictlJson<{ status: { id: string; repoTags: string[] } }>(['inspecti', 'local/offline:v1']);
    assert.deepEqual(st.status.repoTags, ['docker.io/local/offline:v1']);
    const layerDirs = (await readdir(join(dataDir, 'snapshots', 'layers'))).filter((n) => /^[a-f0-9]{64}$/.test(n));
    const withMotd = layerDirs.filter((d) => existsSync(join(dataDir, 'snapshots', 'layers', d, 'fs', 'etc', 'motd')));
    assert.equal(withMotd.length, 1, 'the unpacked layer does not hold the folder');
    assert.equal(readFileSync(join(dataDir, 'snapshots', 'layers', withMotd[0]!, 'fs', 'etc', 'motd'), 'utf8'), 'built offline\n');
  });

  it('imports an OCI layout tar with usernode image import, and refuses a tar that is not one', async () => {
    const layout = join(node.dir, 'layout');
    await mkdir(layout);
    const rootfs = join(node.dir, 'rootfs2');
    await mkdir(rootfs);
    await writeFile(join(rootfs, 'hello'), 'from a tar\n');
    const built = await writeRootfsLayout(rootfs, layout, 'local/fromtar:v2', silentLogger);
    const tarFile = join(node.dir, 'layout.tar');
    assert.equal((await exec('tar', ['-C', layout, '-cf', tarFile, '.'])).code, 0);
    const r = await node.usernode(['image', 'import', tarFile, '--name', 'local/renamed:v3']);
    assert.equal(r.code, 0, r.stderr);
    assert.match(r.stdout, new RegExp(`docker\\.io/local/renamed:v3 \\(${built.configDigest}\\)`));
    const bad = join(node.dir, 'bad.tar');
    await writeFile(join(node.dir, 'evil'), 'x');
    assert.equal((await exec('tar', ['-C', node.dir, '-cf', bad, 'evil'])).code, 0);
    const refused = await node.usernode(['image', 'import', bad]);
    assert.equal(refused.code, 1);
    assert.match(refused.stderr, /layout tar entry "evil"/);
  });

  it('counts pulls, pulled bytes and CRI calls in the metrics the node serves', async () => {
    const res = await fetch(agent.metricsUrl);
    assert.equal(res.status, 200);
    const text = await res.text();
    const value = (re: RegExp): number => Number(re.exec(text)?.[1] ?? NaN);
    assert.ok(value(/^usernode_image_pulls_total\{result="success"\} (\d+)/m) >= 5, 'successful pulls not counted');
    assert.ok(value(/^usernode_image_pulls_total\{result="failure"\} (\d+)/m) >= 3, 'failed pulls not counted');
    assert.ok(value(/^usernode_image_pull_bytes_total (\d+)/m) > 1_000_000, 'pulled bytes not counted');
    assert.equal(value(/^usernode_image_pulls_in_progress (\d+)/m), 0);
    assert.ok(value(/^usernode_cri_operations_total\{service="ImageService",method="PullImage",code="OK"\} (\d+)/m) >= 5);
    assert.ok(value(/^usernode_cri_operations_total\{service="ImageService",method="PullImage",code="PERMISSION_DENIED"\} (\d+)/m) >= 1);
    assert.match(text, /^usernode_cri_operation_duration_seconds_bucket\{le="0\.1",service="ImageService",method="PullImage"\} \d+/m);
    assert.match(text, /^usernode_build_info\{version="[^"]+",nodejs="v\d+/m);
    assert.match(text, /^usernode_runtime_process_resident_memory_bytes \d+/m, "the runtime half's own process metrics are missing");
    assert.match(text, /^process_resident_memory_bytes \d+/m);
  });

  it('keeps every image record across an agent restart', async () => {
    const beforeIds = (await listImages()).map((i) => i.id).sort();
    agent.child.kill('SIGTERM');
    assert.equal((await agent.exited).code, 0);
    agent = node.start();
    await agent.ready();
    assert.deepEqual((await listImages()).map((i) => i.id).sort(), beforeIds);
    assert.ok((await stat(join(dataDir, 'snapshots', 'layers'))).isDirectory());
  });

  // Image Identifier Consistency creates pod sandboxes: it joins this list with the pods milestone.
  it("passes critest's image specs (Image Manager, Image Consistency)", async (t) => {
    const endpoint = `unix://${node.socket}`;
    // The one spec pinned to an upstream manifest digest cannot pass offline.
    const skip = 'public image with digest should be pulled and removed';
    const r = await exec(
      requiredTool('USERNODE_CRITEST'),
      [
        '--runtime-endpoint', endpoint,
        '--image-endpoint', endpoint,
        '--test-images-file', bed.critest.testImagesFile,
        '--ginkgo.focus=Image Manager|Image Consistency',
        `--ginkgo.skip=${skip}`,
        '--ginkgo.no-color',
      ],
      { env: node.env, timeoutMs: 600000 },
    );
    const summary = /Ran (\d+) of (\d+) Specs[\s\S]*?(\d+) Passed \| (\d+) Failed \| (\d+) Pending \| (\d+) Skipped/.exec(r.stdout);
    assert.ok(summary, `no critest summary in:\n${r.stdout.slice(-4000)}\n${r.stderr.slice(-2000)}`);
    t.diagnostic(`critest image specs: ran ${summary[1]}, passed ${summary[3]}, failed ${summary[4]}; skipped 1 on purpose ("${skip}": ${Object.values(bed.critest.unavailable)[0] ?? 'upstream digest'})`);
    assert.equal(summary[4], '0', r.stdout.slice(-6000));
    assert.equal(r.code, 0, r.stdout.slice(-3000));
    assert.ok(Number(summary[1]) >= 11, `critest ran only ${summary[1]} image specs`);
  });
});
