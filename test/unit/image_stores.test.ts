import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { existsSync } from 'node:fs';
import { mkdir, mkdtemp, readdir, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Readable } from 'node:stream';
import { after, before, describe, test } from 'node:test';

import { isDomainError } from '../../pkg/errdefs/errors.js';
import { ContentStore } from '../../pkg/image/content_store.js';
import { type ImageRecord, ImageStore } from '../../pkg/image/image_store.js';
import { chainIds } from '../../pkg/image/layer_store.js';

// The three stores behind the image service: blobs by digest, image records by
// id (with tags and repo digests), and the chain ids layers are unpacked
// under. What a user notices: a pulled image is found by every name crictl
// accepts, survives a restart, and no half-written or wrong blob is ever kept.

const sha256Hex = (b: Buffer | string): string => createHash('sha256').update(b).digest('hex');
const sha256 = (b: Buffer | string): string => `sha256:${sha256Hex(b)}`;

let root = '';
before(async () => {
  root = await mkdtemp(join(tmpdir(), 'usernode-image-stores-'));
});
after(async () => {
  await rm(root, { recursive: true, force: true });
});

let seq = 0;
async function freshDir(name: string): Promise<string> {
  const d = join(root, `${name}-${++seq}`);
  await mkdir(d);
  return d;
}

/** A source that yields `bytes` in a few pieces on later ticks, counting how often it is opened. */
function slowSource(bytes: Buffer): { open: () => Promise<Readable>; opened: () => number } {
  let opened = 0;
  return {
    open: async () => {
      opened++;
      const parts = [bytes.subarray(0, 10), bytes.subarray(10, 20), bytes.subarray(20)];
      return Readable.from(
        (async function* () {
          for (const p of parts) {
            await new Promise((r) => setTimeout(r, 5));
            yield p;
          }
        })(),
      );
    },
    opened: () => opened,
  };
}

async function rejectsCode(p: Promise<unknown>, code: string, mention?: string): Promise<void> {
  let caught: unknown;
  try {
    await p;
  } catch (e: unknown) {
    caught = e;
  }
  assert.ok(isDomainError(caught), `expected a DomainError, got ${String(caught)}`);
  assert.equal(caught.code, code, caught.message);
  if (mention !== undefined) assert.ok(caught.message.includes(mention), `"${caught.message}" does not mention "${mention}"`);
}

describe('ContentStore', () => {
  const content = Buffer.from('the quick brown fox jumps over the lazy dog, twice over');

  test('ingest stores verified content under blobs/sha256/<hex>', async () => {
    const cs = new ContentStore(await freshDir('cs'));
    await cs.init();
    const d = sha256(content);
    await cs.ingest(d, content.length, slowSource(content).open);
    assert.equal(await cs.has(d), true);
    assert.deepEqual(await cs.read(d), content);
    assert.equal(await cs.size(d), content.length);
    assert.deepEqual(await readFile(join(cs.root, 'blobs', 'sha256', sha256Hex(content))), content);
    assert.deepEqual(await cs.list(), [d]);
    assert.deepEqual(await readdir(join(cs.root, 'ingest')), [], 'no ingest file stays after success');
  });

  test('a wrong digest is rejected, and nothing is left in blobs/ nor ingest/', async () => {
    const cs = new ContentStore(await freshDir('cs'));
    await cs.init();
    const claimed = sha256('something else');
    await rejectsCode(cs.ingest(claimed, content.length, slowSource(content).open), 'InvalidArgument', 'does not match its digest');
    assert.equal(await cs.has(claimed), false);
    assert.deepEqual(await readdir(join(cs.root, 'blobs', 'sha256')), []);
    assert.deepEqual(await readdir(join(cs.root, 'ingest')), []);
  });

  test('a wrong size is rejected, and nothing is left behind', async () => {
    const cs = new ContentStore(await freshDir('cs'));
    await cs.init();
    const d = sha256(content);
    await rejectsCode(cs.ingest(d, content.length + 1, slowSource(content).open), 'InvalidArgument', `not the ${content.length + 1}`);
    await rejectsCode(cs.ingest(d, content.length - 1, slowSource(content).open), 'InvalidArgument', 'larger than');
    assert.deepEqual(await readdir(join(cs.root, 'blobs', 'sha256')), []);
    assert.deepEqual(await readdir(join(cs.root, 'ingest')), []);
  });

  test('a source that fails mid-stream leaves nothing behind', async () => {
    const cs = new ContentStore(await freshDir('cs'));
    await cs.init();
    const d = sha256(content);
    const broken = async (): Promise<Readable> =>
      Readable.from(
        (async function* () {
          yield content.subarray(0, 5);
          await new Promise((r) => setTimeout(r, 5));
          throw new Error('connection reset');
        })(),
      );
    await assert.rejects(cs.ingest(d, content.length, broken), /connection reset/);
    assert.equal(await cs.has(d), false);
    assert.deepEqual(await readdir(join(cs.root, 'ingest')), []);
  });

  test('concurrent ingests of one digest open the source once and all succeed', async () => {
    const cs = new ContentStore(await freshDir('cs'));
    await cs.init();
    const d = sha256(content);
    const src = slowSource(content);
    await Promise.all([1, 2, 3, 4].map(() => cs.ingest(d, content.length, src.open)));
    assert.equal(src.opened(), 1);
    assert.deepEqual(await cs.read(d), content);
  });

  test('concurrent ingests of one wrong digest all fail', async () => {
    const cs = new ContentStore(await freshDir('cs'));
    await cs.init();
    const d = sha256('not this');
    const src = slowSource(content);
    const results = await Promise.allSettled([1, 2, 3].map(() => cs.ingest(d, content.length, src.open)));
    assert.deepEqual(
      results.map((r) => r.status),
      ['rejected', 'rejected', 'rejected'],
    );
    assert.equal(src.opened(), 1);
  });

  test('a blob already present is not fetched again', async () => {
    const cs = new ContentStore(await freshDir('cs'));
    await cs.init();
    const d = sha256(content);
    await cs.writeBuffer(d, content);
    const src = slowSource(content);
    await cs.ingest(d, content.length, src.open);
    assert.equal(src.opened(), 0);
  });

  test('init() clears ingest/ (a crashed agent’s partial downloads) and keeps blobs', async () => {
    const dir = await freshDir('cs');
    const cs = new ContentStore(dir);
    await cs.init();
    const d = sha256(content);
    await cs.writeBuffer(d, content);
    await writeFile(join(dir, 'ingest', 'deadbeef'), 'partial');
    await mkdir(join(dir, 'ingest', 'nested'));
    await writeFile(join(dir, 'ingest', 'nested', 'x'), 'partial');
    const again = new ContentStore(dir);
    await again.init();
    assert.deepEqual(await readdir(join(dir, 'ingest')), []);
    assert.deepEqual(await again.read(d), content);
  });

  test('digests that are not sha256:<64 hex> are refused before touching the disk', async () => {
    const cs = new ContentStore(await freshDir('cs'));
    await cs.init();
    for (const bad of ['sha256:../../etc/passwd', `sha512:${'a'.repeat(64)}`, 'sha256:ABC', `sha256:${'A'.repeat(64)}`]) {
      assert.throws(() => cs.path(bad), (e: unknown) => isDomainError(e) && e.code === 'InvalidArgument');
    }
    await rejectsCode(cs.read(sha256('absent')), 'NotFound');
    await rejectsCode(cs.size(sha256('absent')), 'NotFound');
  });

  test('delete removes a blob; open streams it', async () => {
    const cs = new ContentStore(await freshDir('cs'));
    await cs.init();
    const d = sha256(content);
    await cs.writeBuffer(d, content);
    const chunks: Buffer[] = [];
    for await (const c of cs.open(d)) chunks.push(Buffer.from(c as Uint8Array));
    assert.deepEqual(Buffer.concat(chunks), content);
    await cs.delete(d);
    assert.equal(await cs.has(d), false);
    assert.deepEqual(await cs.list(), []);
  });
});

function hexOf(n: number, prefix = ''): string {
  return (prefix + n.toString(16)).padEnd(64, '0').slice(0, 64);
}

function record(idHex: string, opts: { layers?: string[]; blobs?: string[] } = {}): ImageRecord {
  const diffIds = opts.layers ?? [`sha256:${hexOf(1, 'd1')}`];
  const chains = chainIds(diffIds);
  return {
    id: `sha256:${idHex}`,
    repoTags: [],
    repoDigests: [],
    manifestDigest: `sha256:${hexOf(9, 'ee' + idHex.slice(0, 4))}`,
    blobs: opts.blobs ?? [`sha256:${idHex}`],
    layers: diffIds.map((diffId, i) => ({ digest: `sha256:${hexOf(i, 'b' + idHex.slice(0, 6))}`, size: 100, mediaType: 'application/vnd.oci.image.layer.v1.tar+gzip', diffId, chainId: chains[i]! })),
    size: 1234,
    config: { architecture: 'amd64', os: 'linux', rootfs: { type: 'layers', diff_ids: diffIds } },
    pulledAt: new Date(0).toISOString(),
  };
}

describe('ImageStore', () => {
  const idA = `abc123def456${'0'.repeat(52)}`;
  const idB = `abc123def456${'1'.repeat(52)}`; // shares a 12-hex prefix with A
  const idC = `fedcba987654${'2'.repeat(52)}`;
  const digestA = `sha256:${'a'.repeat(64)}`;
  const digestB = `sha256:${'b'.repeat(64)}`;
  const digestC = `sha256:${'c'.repeat(64)}`;

  async function storeWithImages(): Promise<{ dir: string; store: ImageStore }> {
    const dir = await freshDir('records');
    const store = new ImageStore(dir);
    await store.init();
    await store.put(record(idA), 'docker.io/library/busybox:latest', `docker.io/library/busybox@${digestA}`);
    await store.put(record(idB), 'quay.io/team/app:v1', `quay.io/team/app@${digestB}`);
    await store.put(record(idC), undefined, `localhost:5000/only/digest@${digestC}`);
    return { dir, store };
  }

  test('put records the tag and repo digest; resolve by tag, in any short form', async () => {
    const { store } = await storeWithImages();
    for (const spec of ['busybox', 'busybox:latest', 'library/busybox', 'docker.io/library/busybox:latest', 'index.docker.io/library/busybox']) {
      assert.equal(store.resolve(spec)?.id, `sha256:${idA}`, spec);
    }
    assert.equal(store.resolve('quay.io/team/app:v1')?.id, `sha256:${idB}`);
    assert.deepEqual(store.get(`sha256:${idA}`)?.repoTags, ['docker.io/library/busybox:latest']);
    assert.deepEqual(store.get(`sha256:${idA}`)?.repoDigests, [`docker.io/library/busybox@${digestA}`]);
  });

  test('a tag that names no image resolves to nothing', async () => {
    const { store } = await storeWithImages();
    assert.equal(store.resolve('busybox:1.36'), undefined);
    assert.equal(store.resolve('quay.io/team/app'), undefined, 'quay.io/team/app means :latest, which is not there');
    assert.equal(store.resolve('Not A Reference'), undefined);
  });

  test('resolve by repo@digest', async () => {
    const { store } = await storeWithImages();
    assert.equal(store.resolve(`busybox@${digestA}`)?.id, `sha256:${idA}`);
    assert.equal(store.resolve(`quay.io/team/app@${digestB}`)?.id, `sha256:${idB}`);
    assert.equal(store.resolve(`localhost:5000/only/digest@${digestC}`)?.id, `sha256:${idC}`);
    assert.equal(store.resolve(`quay.io/team/app@${digestA}`), undefined, 'digest of another repository');
  });

  test('resolve by full id, with or without sha256:', async () => {
    const { store } = await storeWithImages();
    assert.equal(store.resolve(`sha256:${idC}`)?.id, `sha256:${idC}`);
    assert.equal(store.resolve(idC)?.id, `sha256:${idC}`);
    assert.equal(store.resolve(`sha256:${'9'.repeat(64)}`), undefined);
  });

  test('resolve by a unique prefix of 12+ hex digits; an ambiguous prefix → undefined', async () => {
    const { store } = await storeWithImages();
    assert.equal(store.resolve(idC.slice(0, 12))?.id, `sha256:${idC}`);
    assert.equal(store.resolve(`sha256:${idC.slice(0, 20)}`)?.id, `sha256:${idC}`);
    assert.equal(store.resolve(idA.slice(0, 12)), undefined, 'A and B share this prefix');
    assert.equal(store.resolve(idA.slice(0, 13))?.id, `sha256:${idA}`);
    assert.equal(store.resolve(idB.slice(0, 13))?.id, `sha256:${idB}`);
    assert.equal(store.resolve(idC.slice(0, 11)), undefined, 'fewer than 12 digits is not an id');
  });

  test('a tag moves from one image to another on put', async () => {
    const { store } = await storeWithImages();
    await store.put(record(idC), 'docker.io/library/busybox:latest', `docker.io/library/busybox@${digestC}`);
    assert.equal(store.resolve('busybox')?.id, `sha256:${idC}`);
    assert.deepEqual(store.get(`sha256:${idA}`)?.repoTags, [], 'the old image lost the tag');
    assert.deepEqual(store.get(`sha256:${idA}`)?.repoDigests, [`docker.io/library/busybox@${digestA}`], 'but keeps its repo digest');
    assert.equal(store.resolve(`busybox@${digestA}`)?.id, `sha256:${idA}`);
    assert.deepEqual(store.get(`sha256:${idC}`)?.repoTags, ['docker.io/library/busybox:latest']);
    assert.deepEqual(
      [...(store.get(`sha256:${idC}`)?.repoDigests ?? [])].sort(),
      [`docker.io/library/busybox@${digestC}`, `localhost:5000/only/digest@${digestC}`].sort(),
    );
  });

  test('putting the same image again merges tags and blobs, without duplicates', async () => {
    const { store } = await storeWithImages();
    await store.put({ ...record(idA), blobs: [`sha256:${idA}`, digestA] }, 'docker.io/library/busybox:stable', `docker.io/library/busybox@${digestA}`);
    await store.put(record(idA), 'docker.io/library/busybox:stable', `docker.io/library/busybox@${digestA}`);
    const r = store.get(`sha256:${idA}`)!;
    assert.deepEqual([...r.repoTags].sort(), ['docker.io/library/busybox:latest', 'docker.io/library/busybox:stable']);
    assert.deepEqual(r.repoDigests, [`docker.io/library/busybox@${digestA}`]);
    assert.deepEqual([...r.blobs].sort(), [`sha256:${idA}`, digestA].sort());
    assert.equal(store.list().length, 3);
  });

  test('records survive a new ImageStore on the same dir', async () => {
    const { dir, store } = await storeWithImages();
    await store.put(record(idC), 'docker.io/library/busybox:latest', `docker.io/library/busybox@${digestC}`);
    const reopened = new ImageStore(dir);
    await reopened.init();
    assert.equal(reopened.list().length, 3);
    assert.deepEqual(reopened.get(`sha256:${idA}`), store.get(`sha256:${idA}`));
    assert.deepEqual(reopened.get(`sha256:${idC}`), store.get(`sha256:${idC}`));
    assert.equal(reopened.resolve('busybox')?.id, `sha256:${idC}`, 'the moved tag is on disk too');
    assert.deepEqual(reopened.get(`sha256:${idA}`)?.repoTags, []);
    assert.equal(reopened.resolve('quay.io/team/app:v1')?.id, `sha256:${idB}`);
  });

  test('a corrupt .json record is moved aside into corrupt/ on init; a stale .tmp is removed; others load', async () => {
    const { dir } = await storeWithImages();
    const corrupt = join(dir, `${'d'.repeat(64)}.json`);
    await writeFile(corrupt, '{"id": "sha256:dddd", "repoTa');
    await writeFile(join(dir, `${idA}.json.tmp`), '{}');
    const reopened = new ImageStore(dir);
    await reopened.init();
    assert.equal(existsSync(corrupt), false);
    assert.equal((await readdir(join(dir, 'corrupt'))).filter((n) => n.startsWith(`${'d'.repeat(64)}.json.`)).length, 1, 'kept in corrupt/, not deleted');
    assert.equal(existsSync(join(dir, `${idA}.json.tmp`)), false);
    assert.deepEqual(
      reopened
        .list()
        .map((r) => r.id)
        .sort(),
      [`sha256:${idA}`, `sha256:${idB}`, `sha256:${idC}`].sort(),
    );
  });

  test('records are written atomically: no .tmp stays after put', async () => {
    const { dir } = await storeWithImages();
    const names = (await readdir(dir)).sort();
    assert.deepEqual(names, [`${idA}.json`, `${idB}.json`, `${idC}.json`].sort());
    const onDisk = JSON.parse(await readFile(join(dir, `${idB}.json`), 'utf8')) as ImageRecord;
    assert.deepEqual(onDisk.repoTags, ['quay.io/team/app:v1']);
  });

  test('remove() deletes the record in memory and on disk', async () => {
    const { dir, store } = await storeWithImages();
    assert.equal(await store.remove(`sha256:${idA}`), true);
    assert.equal(store.resolve('busybox'), undefined);
    assert.equal(store.get(`sha256:${idA}`), undefined);
    assert.equal(existsSync(join(dir, `${idA}.json`)), false);
    assert.equal(await store.remove(`sha256:${idA}`), false, 'removing twice reports nothing removed');
    const reopened = new ImageStore(dir);
    await reopened.init();
    assert.equal(reopened.get(`sha256:${idA}`), undefined);
    assert.equal(reopened.list().length, 2);
  });

  test('after removing one of two images sharing a prefix, the prefix is unique again', async () => {
    const { store } = await storeWithImages();
    await store.remove(`sha256:${idA}`);
    assert.equal(store.resolve(idB.slice(0, 12))?.id, `sha256:${idB}`);
  });

  test('referencedBlobs and referencedChains are the union over images, and shrink on remove', async () => {
    const dir = await freshDir('records');
    const store = new ImageStore(dir);
    await store.init();
    const base = `sha256:${hexOf(1, 'ba5e')}`;
    const top1 = `sha256:${hexOf(2, '7091')}`;
    const top2 = `sha256:${hexOf(3, '7092')}`;
    const shared = `sha256:${hexOf(4, '5ba2ed')}`;
    await store.put(record(idA, { layers: [base, top1], blobs: [shared, digestA] }), 'x/a:1', `docker.io/x/a@${digestA}`);
    await store.put(record(idC, { layers: [base, top2], blobs: [shared, digestC] }), 'x/c:1', `docker.io/x/c@${digestC}`);
    assert.deepEqual([...store.referencedBlobs()].sort(), [shared, digestA, digestC].sort());
    const chainsA = chainIds([base, top1]);
    const chainsC = chainIds([base, top2]);
    assert.deepEqual([...store.referencedChains()].sort(), [...new Set([...chainsA, ...chainsC])].sort());
    assert.equal(store.referencedChains().size, 3, 'the base layer is shared');
    await store.remove(`sha256:${idA}`);
    assert.deepEqual([...store.referencedBlobs()].sort(), [shared, digestC].sort());
    assert.deepEqual([...store.referencedChains()].sort(), [...chainsC].sort());
  });
});

describe('chainIds follows the OCI image-spec formula', () => {
  // ChainID(L0) = DiffID(L0); ChainID(Ln) = SHA256(ChainID(Ln-1) + " " + DiffID(Ln)), as "sha256:<hex>".
  const d = [sha256('layer zero'), sha256('layer one'), sha256('layer two'), sha256('layer three')];

  test('one layer: the chain id is the diff id', () => {
    assert.deepEqual(chainIds([d[0]!]), [d[0]]);
  });

  test('several layers, computed independently', () => {
    const expect: string[] = [d[0]!];
    for (let i = 1; i < d.length; i++) expect.push(sha256(`${expect[i - 1]!} ${d[i]!}`));
    assert.deepEqual(chainIds(d), expect);
  });

  test('a known value: two layers', () => {
    const c1 = `sha256:${createHash('sha256').update(Buffer.from(`${d[0]!} ${d[1]!}`, 'utf8')).digest('hex')}`;
    assert.equal(chainIds(d.slice(0, 2))[1], c1);
  });

  test('a shared base gives shared chain ids; a different base changes every id above it', () => {
    const a = chainIds([d[0]!, d[1]!, d[2]!]);
    const b = chainIds([d[0]!, d[1]!, d[3]!]);
    const c = chainIds([d[3]!, d[1]!, d[2]!]);
    assert.deepEqual(a.slice(0, 2), b.slice(0, 2));
    assert.notEqual(a[2], b[2]);
    assert.ok(a.every((x, i) => x !== c[i]));
  });

  test('no layers, no chain ids', () => {
    assert.deepEqual(chainIds([]), []);
  });
});
