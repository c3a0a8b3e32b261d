import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { existsSync } from 'node:fs';
import { chmod, mkdir, mkdtemp, readdir, readFile, rm, symlink, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { Readable } from 'node:stream';
import { after, before, describe, test } from 'node:test';
import { gunzipSync } from 'node:zlib';

import { extract, pack } from 'tar-stream';

import { isDomainError } from '../../pkg/errdefs/errors.js';
import { silentLogger } from '../../pkg/log/logger.js';
import { type ImageConfig, type ImageIndex, type ImageManifest, mediaTypes, nodePlatform } from '../../pkg/image/media_types.js';
import { layoutImages, layoutSource, openLayout, refNameAnnotation } from '../../pkg/image/oci_layout.js';
import { parseReference } from '../../pkg/image/reference.js';
import { writeRootfsLayout } from '../../pkg/image/rootfs_layout.js';

// `usernode image build-rootfs` writes an OCI layout; `usernode image import`
// reads one (folder or tar). What a user notices: the layout is one other
// tools accept (digests that match, the right media types, diff ids of the
// uncompressed tar), images get the name they were given, and a layout tar
// cannot write outside its temporary folder.

const sha256 = (b: Buffer | string): string => `sha256:${createHash('sha256').update(b).digest('hex')}`;
const containerdName = 'io.containerd.image.name';

let root = '';
before(async () => {
  root = await mkdtemp(join(tmpdir(), 'usernode-image-layout-'));
});
after(async () => {
  await rm(root, { recursive: true, force: true });
});

let seq = 0;
async function fresh(name: string): Promise<string> {
  const d = join(root, `${name}-${++seq}`);
  await mkdir(d, { recursive: true });
  return d;
}

async function rejectsCode(p: Promise<unknown>, code: string, ...mentions: string[]): Promise<Error> {
  let caught: unknown;
  try {
    await p;
  } catch (e: unknown) {
    caught = e;
  }
  assert.ok(isDomainError(caught), `expected a DomainError, got ${String(caught)}`);
  assert.equal(caught.code, code, caught.message);
  for (const m of mentions) assert.ok(caught.message.includes(m), `"${caught.message}" does not mention "${m}"`);
  return caught;
}

async function readAll(s: Readable): Promise<Buffer> {
  const out: Buffer[] = [];
  for await (const c of s) out.push(Buffer.from(c as Uint8Array));
  return Buffer.concat(out);
}

interface TarEntry {
  name: string;
  type: string;
  mode: number;
  uid: number;
  gid: number;
  linkname: string | null | undefined;
  content: Buffer;
}

async function listTar(tar: Buffer): Promise<TarEntry[]> {
  const ex = extract();
  const out: TarEntry[] = [];
  const done = new Promise<void>((resolve, reject) => {
    ex.on('entry', (h, stream, next) => {
      const chunks: Buffer[] = [];
      stream.on('data', (c: unknown) => chunks.push(Buffer.from(c as Uint8Array)));
      stream.on('end', () => {
        out.push({ name: h.name, type: h.type ?? 'file', mode: h.mode ?? 0, uid: h.uid ?? -1, gid: h.gid ?? -1, linkname: h.linkname, content: Buffer.concat(chunks) });
        next();
      });
      stream.resume();
    });
    ex.on('finish', resolve);
    ex.on('error', reject);
  });
  ex.end(tar);
  await done;
  return out;
}

type PackHeader = Parameters<ReturnType<typeof pack>['entry']>[0];

async function tarOf(members: Array<{ header: PackHeader; content?: string | Buffer }>): Promise<Buffer> {
  const p = pack();
  const out: Buffer[] = [];
  const reading = (async () => {
    for await (const c of p) out.push(Buffer.from(c as Uint8Array));
  })();
  for (const m of members) {
    await new Promise<void>((resolve, reject) => {
      const done = (e?: Error | null): void => (e ? reject(e) : resolve());
      const header: PackHeader = { mtime: new Date(0), ...m.header };
      if (m.content !== undefined) p.entry(header, m.content, done);
      else p.entry(header, done);
    });
  }
  p.finalize();
  await reading;
  return Buffer.concat(out);
}

/** A small rootfs: a file, a folder with a file, a symlink and an executable. */
async function sampleRootfs(): Promise<string> {
  const dir = await fresh('rootfs');
  await writeFile(join(dir, 'hello.txt'), 'hello, world\n');
  await chmod(join(dir, 'hello.txt'), 0o644);
  await mkdir(join(dir, 'etc'));
  await chmod(join(dir, 'etc'), 0o755);
  await writeFile(join(dir, 'etc', 'os-release'), 'ID=test\n');
  await chmod(join(dir, 'etc', 'os-release'), 0o644);
  await mkdir(join(dir, 'bin'));
  await chmod(join(dir, 'bin'), 0o755);
  await writeFile(join(dir, 'bin', 'tool'), '#!/bin/sh\necho tool\n');
  await chmod(join(dir, 'bin', 'tool'), 0o755);
  await symlink('../hello.txt', join(dir, 'bin', 'hello-link'));
  return dir;
}

interface BuiltLayout {
  out: string;
  result: Awaited<ReturnType<typeof writeRootfsLayout>>;
  index: ImageIndex;
  manifest: ImageManifest;
  manifestBytes: Buffer;
  config: ImageConfig & { variant?: string };
  layer: Buffer;
}

async function buildSample(name = 'localhost:5000/team/tool:v1'): Promise<BuiltLayout> {
  const rootfs = await sampleRootfs();
  const out = await fresh('layout');
  const result = await writeRootfsLayout(rootfs, out, name, silentLogger);
  const index = JSON.parse(await readFile(join(out, 'index.json'), 'utf8')) as ImageIndex;
  const blob = (d: string): Promise<Buffer> => readFile(join(out, 'blobs', 'sha256', d.slice('sha256:'.length)));
  const manifestBytes = await blob(index.manifests[0]!.digest);
  const manifest = JSON.parse(manifestBytes.toString('utf8')) as ImageManifest;
  const config = JSON.parse((await blob(manifest.config.digest)).toString('utf8')) as ImageConfig & { variant?: string };
  const layer = await blob(manifest.layers[0]!.digest);
  return { out, result, index, manifest, manifestBytes, config, layer };
}

describe('writeRootfsLayout', () => {
  let b: BuiltLayout;
  before(async () => {
    b = await buildSample();
  });

  test('oci-layout declares version 1.0.0', async () => {
    assert.deepEqual(JSON.parse(await readFile(join(b.out, 'oci-layout'), 'utf8')), { imageLayoutVersion: '1.0.0' });
  });

  test('index.json lists one OCI manifest with the full name as ref.name', () => {
    assert.equal(b.index.schemaVersion, 2);
    assert.equal(b.index.manifests.length, 1);
    const m = b.index.manifests[0]!;
    assert.equal(m.mediaType, mediaTypes.ociManifest);
    assert.equal(m.annotations?.[refNameAnnotation], 'localhost:5000/team/tool:v1');
    assert.equal(m.digest, b.result.manifestDigest);
    assert.equal(m.size, b.manifestBytes.length);
  });

  test('the name is normalised: a short name gets docker.io/library/ and :latest', async () => {
    const other = await buildSample('tool');
    assert.equal(other.result.name, 'docker.io/library/tool:latest');
    assert.equal(other.index.manifests[0]!.annotations?.[refNameAnnotation], 'docker.io/library/tool:latest');
  });

  test('every blob’s sha256 matches its file name, and nothing else is in blobs/', async () => {
    const names = await readdir(join(b.out, 'blobs', 'sha256'));
    assert.equal(names.length, 3, `manifest, config, layer: ${names.join(', ')}`);
    for (const n of names) {
      const bytes = await readFile(join(b.out, 'blobs', 'sha256', n));
      assert.equal(sha256(bytes), `sha256:${n}`, n);
    }
    const top = (await readdir(b.out)).sort();
    assert.deepEqual(top, ['blobs', 'index.json', 'oci-layout'], 'no temporary layer file stays');
  });

  test('the manifest names the config and a gzip layer with the right media types and sizes', async () => {
    assert.equal(b.manifest.schemaVersion, 2);
    assert.equal(b.manifest.mediaType, mediaTypes.ociManifest);
    assert.equal(b.manifest.config.mediaType, mediaTypes.ociConfig);
    assert.equal(b.manifest.config.digest, b.result.configDigest);
    const configBytes = await readFile(join(b.out, 'blobs', 'sha256', b.manifest.config.digest.slice(7)));
    assert.equal(b.manifest.config.size, configBytes.length);
    assert.equal(b.manifest.layers.length, 1);
    assert.equal(b.manifest.layers[0]!.mediaType, mediaTypes.ociLayerGzip);
    assert.equal(b.manifest.layers[0]!.size, b.layer.length);
    assert.equal(b.layer[0], 0x1f);
    assert.equal(b.layer[1], 0x8b, 'the layer is gzip');
  });

  test('config diff_ids is the sha256 of the uncompressed tar; platform is the node’s', () => {
    assert.equal(b.config.rootfs.type, 'layers');
    assert.deepEqual(b.config.rootfs.diff_ids, [sha256(gunzipSync(b.layer))]);
    const p = nodePlatform();
    assert.equal(b.config.os, p.os);
    assert.equal(b.config.architecture, p.architecture);
    assert.equal(b.config.variant, p.variant);
    assert.ok(b.config.config?.Cmd?.length, 'a default command');
  });

  test('the layer holds the file, folders, symlink and the 0755 file, owned by root', async () => {
    const entries = await listTar(gunzipSync(b.layer));
    const by = new Map(entries.map((e) => [e.name.replace(/\/$/, ''), e]));
    assert.deepEqual([...by.keys()].sort(), ['bin', 'bin/hello-link', 'bin/tool', 'etc', 'etc/os-release', 'hello.txt']);
    assert.equal(b.result.entries, 6);
    assert.deepEqual(b.result.skipped, []);

    const hello = by.get('hello.txt')!;
    assert.equal(hello.type, 'file');
    assert.equal(hello.content.toString(), 'hello, world\n');
    assert.equal(hello.mode & 0o7777, 0o644);

    const tool = by.get('bin/tool')!;
    assert.equal(tool.type, 'file');
    assert.equal(tool.mode & 0o7777, 0o755);
    assert.equal(tool.content.toString(), '#!/bin/sh\necho tool\n');

    assert.equal(by.get('etc')!.type, 'directory');
    assert.equal(by.get('etc')!.mode & 0o7777, 0o755);

    const link = by.get('bin/hello-link')!;
    assert.equal(link.type, 'symlink');
    assert.equal(link.linkname, '../hello.txt');

    for (const e of entries) {
      assert.equal(e.uid, 0, `${e.name} uid`);
      assert.equal(e.gid, 0, `${e.name} gid`);
      assert.ok(!e.name.startsWith('/') && !e.name.split('/').includes('..'), `relative entry name: ${e.name}`);
    }
  });

  test('a folder is listed before its contents', async () => {
    const names = (await listTar(gunzipSync(b.layer))).map((e) => e.name.replace(/\/$/, ''));
    assert.ok(names.indexOf('bin') < names.indexOf('bin/tool'));
    assert.ok(names.indexOf('etc') < names.indexOf('etc/os-release'));
  });

  test('the same folder gives the same image (reproducible digests)', async () => {
    const rootfs = await sampleRootfs();
    const o1 = await fresh('layout');
    const o2 = await fresh('layout');
    const r1 = await writeRootfsLayout(rootfs, o1, 'x/y:1', silentLogger);
    const r2 = await writeRootfsLayout(rootfs, o2, 'x/y:1', silentLogger);
    assert.equal(r1.manifestDigest, r2.manifestDigest);
    assert.equal(r1.configDigest, r2.configDigest);
  });

  test('the layout it writes imports back under its name', async () => {
    const opened = await openLayout(b.out, await fresh('scratch'));
    assert.equal(opened.dir, b.out);
    const images = await layoutImages(opened.dir, undefined);
    assert.equal(images.length, 1);
    assert.deepEqual(images[0]!.ref, { domain: 'localhost:5000', path: 'team/tool', tag: 'v1', digest: b.result.manifestDigest });
    const src = layoutSource(opened.dir);
    const m = await src.manifest(images[0]!.ref);
    assert.deepEqual(m.bytes, b.manifestBytes);
    assert.equal(m.mediaType, mediaTypes.ociManifest);
    assert.equal(m.digest, b.result.manifestDigest);
    const layerDesc = b.manifest.layers[0]!;
    assert.deepEqual(await readAll(await src.blob(layerDesc.digest, layerDesc.size)), b.layer);
    await opened.close();
    assert.ok(existsSync(b.out), 'closing a folder layout leaves the folder');
  });

  test('a bad name → InvalidArgument on NAME; a missing folder → InvalidArgument on DIR', async () => {
    const rootfs = await sampleRootfs();
    const e1 = await rejectsCode(writeRootfsLayout(rootfs, await fresh('layout'), 'Bad/Name', silentLogger), 'InvalidArgument');
    assert.equal((e1 as { field?: string }).field, 'NAME');
    const e2 = await rejectsCode(writeRootfsLayout(join(root, 'no-such-rootfs'), await fresh('layout'), 'x/y', silentLogger), 'InvalidArgument', 'not a folder');
    assert.equal((e2 as { field?: string }).field, 'DIR');
  });
});

/** Writes a layout folder whose index.json lists `entries`, each pointing at a real manifest blob. */
async function layoutWith(entries: Array<Record<string, string> | undefined>): Promise<{ dir: string; digests: string[] }> {
  const dir = await fresh('hand-layout');
  await mkdir(join(dir, 'blobs', 'sha256'), { recursive: true });
  await writeFile(join(dir, 'oci-layout'), JSON.stringify({ imageLayoutVersion: '1.0.0' }));
  const digests: string[] = [];
  const manifests = [];
  for (const [i, annotations] of entries.entries()) {
    const bytes = Buffer.from(JSON.stringify({ schemaVersion: 2, mediaType: mediaTypes.ociManifest, config: { mediaType: mediaTypes.ociConfig, digest: sha256(`c${i}`), size: 2 }, layers: [] }));
    const d = sha256(bytes);
    await writeFile(join(dir, 'blobs', 'sha256', d.slice(7)), bytes);
    digests.push(d);
    manifests.push({ mediaType: mediaTypes.ociManifest, digest: d, size: bytes.length, ...(annotations ? { annotations } : {}) });
  }
  await writeFile(join(dir, 'index.json'), JSON.stringify({ schemaVersion: 2, manifests }));
  return { dir, digests };
}

describe('layoutImages', () => {
  test('a full name in ref.name is the image’s name, pinned to the manifest digest', async () => {
    const { dir, digests } = await layoutWith([{ [refNameAnnotation]: 'quay.io/team/app:2.1' }]);
    assert.deepEqual(await layoutImages(dir, undefined), [{ ref: { domain: 'quay.io', path: 'team/app', tag: '2.1', digest: digests[0] } }]);
  });

  test('a short full name is normalised', async () => {
    const { dir, digests } = await layoutWith([{ [refNameAnnotation]: 'team/app:1' }]);
    assert.deepEqual(await layoutImages(dir, undefined), [{ ref: { domain: 'docker.io', path: 'team/app', tag: '1', digest: digests[0] } }]);
  });

  test('containerd’s io.containerd.image.name wins over ref.name', async () => {
    const { dir } = await layoutWith([{ [containerdName]: 'docker.io/library/busybox:1.36', [refNameAnnotation]: '1.36' }]);
    const [img] = await layoutImages(dir, undefined);
    assert.equal(img!.ref.path, 'library/busybox');
    assert.equal(img!.ref.tag, '1.36');
  });

  test('several named images are all listed', async () => {
    const { dir, digests } = await layoutWith([{ [refNameAnnotation]: 'a/one:1' }, { [refNameAnnotation]: 'a/two:2' }]);
    const imgs = await layoutImages(dir, undefined);
    assert.deepEqual(
      imgs.map((i) => [i.ref.path, i.ref.tag, i.ref.digest]),
      [
        ['a/one', '1', digests[0]],
        ['a/two', '2', digests[1]],
      ],
    );
  });

  test('a bare-tag ref.name without --name → InvalidArgument mentioning --name', async () => {
    const { dir } = await layoutWith([{ [refNameAnnotation]: 'latest' }]);
    const e = await rejectsCode(layoutImages(dir, undefined), 'InvalidArgument', '--name', '"latest"');
    assert.equal((e as { field?: string }).field, '--name');
  });

  test(
    'a dotted bare-tag ref.name ("v1.0", "1.36", as skopeo oci:DIR:TAG writes) also asks for --name',
    async () => {
      for (const tag of ['v1.0', '1.36']) {
        const { dir } = await layoutWith([{ [refNameAnnotation]: tag }]);
        await rejectsCode(layoutImages(dir, undefined), 'InvalidArgument', '--name');
      }
    },
  );

  test('no name at all without --name → InvalidArgument mentioning --name', async () => {
    const { dir, digests } = await layoutWith([undefined]);
    await rejectsCode(layoutImages(dir, undefined), 'InvalidArgument', '--name', digests[0]!);
  });

  test('--name names an unnamed or bare-tag image, and renames a named one', async () => {
    for (const ann of [undefined, { [refNameAnnotation]: 'latest' }, { [refNameAnnotation]: 'quay.io/other/name:9' }]) {
      const { dir, digests } = await layoutWith([ann]);
      assert.deepEqual(await layoutImages(dir, 'localhost:5000/mine:3'), [{ ref: { domain: 'localhost:5000', path: 'mine', tag: '3', digest: digests[0] } }]);
    }
  });

  test('--name without a tag means :latest', async () => {
    const { dir } = await layoutWith([undefined]);
    const [img] = await layoutImages(dir, 'mine');
    assert.equal(img!.ref.tag, 'latest');
    assert.equal(img!.ref.path, 'library/mine');
  });

  test('--name with several images → InvalidArgument on --name', async () => {
    const { dir } = await layoutWith([{ [refNameAnnotation]: 'a/one:1' }, { [refNameAnnotation]: 'a/two:2' }]);
    const e = await rejectsCode(layoutImages(dir, 'x/y:1'), 'InvalidArgument', '--name', '2 images');
    assert.equal((e as { field?: string }).field, '--name');
  });

  test('an invalid --name is reported against --name', async () => {
    const { dir } = await layoutWith([undefined]);
    const e = await rejectsCode(layoutImages(dir, 'Not Valid'), 'InvalidArgument');
    assert.equal((e as { field?: string }).field, '--name');
  });

  test('an index with no images, or no index.json → InvalidArgument', async () => {
    const { dir } = await layoutWith([]);
    await rejectsCode(layoutImages(dir, undefined), 'InvalidArgument', 'no images');
    await rm(join(dir, 'index.json'));
    await rejectsCode(layoutImages(dir, undefined), 'InvalidArgument', 'index.json');
  });
});

describe('layoutSource', () => {
  test('manifest verifies the digest: altered bytes → InvalidArgument', async () => {
    const { dir, digests } = await layoutWith([{ [refNameAnnotation]: 'a/b:1' }]);
    const ref = { ...parseReference('a/b:1'), digest: digests[0] };
    const ok = await layoutSource(dir).manifest(ref);
    assert.equal(ok.digest, digests[0]);
    assert.equal(ok.mediaType, mediaTypes.ociManifest);
    const path = join(dir, 'blobs', 'sha256', digests[0]!.slice(7));
    const bytes = await readFile(path);
    await writeFile(path, Buffer.from(bytes.toString('utf8').replace('"size":2', '"size":3')));
    await rejectsCode(layoutSource(dir).manifest(ref), 'InvalidArgument', digests[0]!, 'does not match');
  });

  test('manifest: a missing blob → NotFound; a reference without a digest → InvalidArgument', async () => {
    const { dir } = await layoutWith([]);
    await rejectsCode(layoutSource(dir).manifest({ ...parseReference('a/b:1'), digest: sha256('absent') }), 'NotFound', sha256('absent'));
    await rejectsCode(layoutSource(dir).manifest(parseReference('a/b:1')), 'InvalidArgument');
  });

  test('blob streams verified bytes: correct passes, a flipped byte or wrong size errors', async () => {
    const dir = await fresh('blobs-layout');
    await mkdir(join(dir, 'blobs', 'sha256'), { recursive: true });
    const good = Buffer.from('layer content '.repeat(1000));
    const d = sha256(good);
    const path = join(dir, 'blobs', 'sha256', d.slice(7));
    await writeFile(path, good);
    const src = layoutSource(dir);
    assert.deepEqual(await readAll(await src.blob(d, good.length)), good);
    await rejectsCode(readAll(await src.blob(d, good.length + 5)), 'InvalidArgument', `not the ${good.length + 5}`);
    const bad = Buffer.from(good);
    bad[500] = bad[500]! ^ 0x20;
    await writeFile(path, bad);
    await rejectsCode(readAll(await src.blob(d, good.length)), 'InvalidArgument', 'does not match its digest');
  });

  test('blob: a missing blob → NotFound; a digest with a path in it is refused', async () => {
    const { dir } = await layoutWith([]);
    await rejectsCode(layoutSource(dir).blob(sha256('nope'), 4), 'NotFound');
    await rejectsCode(layoutSource(dir).blob('sha256:../../../etc/passwd', 4), 'InvalidArgument');
  });
});

describe('openLayout', () => {
  async function layoutTar(extra: Array<{ header: PackHeader; content?: string | Buffer }> = []): Promise<{ tar: string; manifestDigest: string }> {
    const manifest = Buffer.from(JSON.stringify({ schemaVersion: 2, mediaType: mediaTypes.ociManifest, config: { mediaType: mediaTypes.ociConfig, digest: sha256('c'), size: 1 }, layers: [] }));
    const md = sha256(manifest);
    const index = JSON.stringify({ schemaVersion: 2, manifests: [{ mediaType: mediaTypes.ociManifest, digest: md, size: manifest.length, annotations: { [refNameAnnotation]: 'x/y:1' } }] });
    const bytes = await tarOf([
      { header: { name: 'oci-layout', type: 'file', mode: 0o644 }, content: JSON.stringify({ imageLayoutVersion: '1.0.0' }) },
      { header: { name: 'index.json', type: 'file', mode: 0o644 }, content: index },
      { header: { name: 'blobs/', type: 'directory', mode: 0o755 } },
      { header: { name: 'blobs/sha256/', type: 'directory', mode: 0o755 } },
      { header: { name: `blobs/sha256/${md.slice(7)}`, type: 'file', mode: 0o644 }, content: manifest },
      ...extra,
    ]);
    const tar = join(await fresh('tars'), 'layout.tar');
    await writeFile(tar, bytes);
    return { tar, manifestDigest: md };
  }

  test('a layout tar is unpacked to a temp folder under scratch, readable, and removed on close', async () => {
    const { tar, manifestDigest } = await layoutTar();
    const scratch = join(await fresh('scratch'), 'nested', 'scratch');
    const opened = await openLayout(tar, scratch);
    assert.ok(opened.dir.startsWith(scratch + '/'), opened.dir);
    const [img] = await layoutImages(opened.dir, undefined);
    assert.equal(img!.ref.digest, manifestDigest);
    assert.equal((await layoutSource(opened.dir).manifest(img!.ref)).digest, manifestDigest);
    await opened.close();
    assert.equal(existsSync(opened.dir), false);
    assert.deepEqual(await readdir(scratch), []);
  });

  test('a "./"-prefixed layout tar (as tar -C dir . writes) is accepted', async () => {
    const manifest = Buffer.from('{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json"}');
    const md = sha256(manifest);
    const bytes = await tarOf([
      { header: { name: './', type: 'directory', mode: 0o755 } },
      { header: { name: './oci-layout', type: 'file', mode: 0o644 }, content: '{"imageLayoutVersion":"1.0.0"}' },
      { header: { name: './index.json', type: 'file', mode: 0o644 }, content: JSON.stringify({ schemaVersion: 2, manifests: [{ mediaType: mediaTypes.ociManifest, digest: md, size: manifest.length }] }) },
      { header: { name: './blobs/', type: 'directory', mode: 0o755 } },
      { header: { name: './blobs/sha256/', type: 'directory', mode: 0o755 } },
      { header: { name: `./blobs/sha256/${md.slice(7)}`, type: 'file', mode: 0o644 }, content: manifest },
    ]);
    const tar = join(await fresh('tars'), 'dot.tar');
    await writeFile(tar, bytes);
    const opened = await openLayout(tar, await fresh('scratch'));
    assert.ok(existsSync(join(opened.dir, 'blobs', 'sha256', md.slice(7))));
    await opened.close();
  });

  const absTarget = (): string => join(root, 'abs-escape');
  const hostile: Array<[string, () => { header: PackHeader; content?: string }]> = [
    ['a file outside blobs/', () => ({ header: { name: 'etc/passwd', type: 'file', mode: 0o644 }, content: 'root::0:0::/:/bin/sh\n' })],
    ['a path climbing out', () => ({ header: { name: '../escaped', type: 'file', mode: 0o644 }, content: 'x' })],
    ['a path climbing out through blobs/', () => ({ header: { name: 'blobs/sha256/../../../escaped2', type: 'file', mode: 0o644 }, content: 'x' })],
    ['an absolute path', () => ({ header: { name: absTarget(), type: 'file', mode: 0o644 }, content: 'x' })],
    ['a symlink in blobs/', () => ({ header: { name: `blobs/sha256/${'e'.repeat(64)}`, type: 'symlink', linkname: '/etc/passwd' } })],
    ['a blob name that is not hex', () => ({ header: { name: 'blobs/sha256/not-a-digest', type: 'file', mode: 0o644 }, content: 'x' })],
  ];
  for (const [what, make] of hostile) {
    test(`a tar with ${what} → InvalidArgument naming the entry, and the temp folder is removed`, async () => {
      const member = make();
      const { tar } = await layoutTar([member]);
      const base = await fresh('scratch');
      const scratch = join(base, 'scratch');
      await rejectsCode(openLayout(tar, scratch), 'InvalidArgument', member.header.name);
      assert.deepEqual(await readdir(scratch), [], 'the import-* folder is gone');
      assert.deepEqual(await readdir(base), ['scratch'], 'nothing was written beside scratch');
      assert.equal(existsSync(join(root, 'escaped')), false);
      assert.equal(existsSync(absTarget()), false);
    });
  }

  test('a tar that is not a layout (no oci-layout file) → InvalidArgument, temp folder removed', async () => {
    const bytes = await tarOf([{ header: { name: 'index.json', type: 'file', mode: 0o644 }, content: '{}' }]);
    const tar = join(await fresh('tars'), 'nolayout.tar');
    await writeFile(tar, bytes);
    const scratch = await fresh('scratch');
    await rejectsCode(openLayout(tar, scratch), 'InvalidArgument', 'oci-layout');
    assert.deepEqual(await readdir(scratch), []);
  });

  test('a file that is not a tar → InvalidArgument, temp folder removed', async () => {
    const path = join(await fresh('tars'), 'garbage.tar');
    await writeFile(path, Buffer.alloc(2048, 0x41));
    const scratch = await fresh('scratch');
    await rejectsCode(openLayout(path, scratch), 'InvalidArgument');
    assert.deepEqual(await readdir(scratch), []);
  });

  test('a missing path → NotFound naming it', async () => {
    const missing = join(root, 'no', 'such', 'layout.tar');
    const e = await rejectsCode(openLayout(missing, await fresh('scratch')), 'NotFound', missing);
    assert.equal((e as { field?: string }).field, 'path');
  });

  test('a folder without oci-layout, or with another version → InvalidArgument', async () => {
    const dir = await fresh('not-layout');
    await rejectsCode(openLayout(dir, await fresh('scratch')), 'InvalidArgument', 'oci-layout');
    await writeFile(join(dir, 'oci-layout'), JSON.stringify({ imageLayoutVersion: '2.0.0' }));
    await rejectsCode(openLayout(dir, await fresh('scratch')), 'InvalidArgument', '2.0.0');
  });
});
