import assert from 'node:assert/strict';
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { Readable } from 'node:stream';
import { describe, test } from 'node:test';

import { isDomainError } from '../../pkg/errdefs/errors.js';
import { ContentStore } from '../../pkg/image/content_store.js';
import type { ContentSource } from '../../pkg/image/content_source.js';
import { ImageService } from '../../pkg/image/image_service.js';
import { ImageStore } from '../../pkg/image/image_store.js';
import { chainIds, LayerStore } from '../../pkg/image/layer_store.js';
import { mediaTypes } from '../../pkg/image/media_types.js';
import { parseReference } from '../../pkg/image/reference.js';
import type { RegistryClient } from '../../pkg/image/registry_client.js';
import { SharedJobs } from '../../pkg/image/shared_jobs.js';
import { silentLogger } from '../../pkg/log/logger.js';
import { type SandboxRecord, SandboxStore } from '../../pkg/sandbox/sandbox_store.js';
import { layerOf, sha256 } from '../lib/fake_registry.js';
import { tempFolders } from '../lib/unit.js';

// Races between requests, each run to one consistent outcome: of two pods
// asking for one name exactly one is made; a container never joins a pod that
// is being stopped; garbage collection and a failed pull's cleanup never take
// what a pull or a container create in progress stands on; a pull shared by
// two callers survives the first caller's cancel.

const dirs = tempFolders('usernode-store-concurrency-');
const tick = (): Promise<void> => new Promise((r) => setTimeout(r, 2));

function codeOf(e: unknown): string {
  return isDomainError(e) ? e.code : `not a domain error: ${String(e)}`;
}

function sandbox(id: string, name = 'web'): SandboxRecord {
  return {
    id,
    metadata: { name, uid: 'u1', namespace: 'default', attempt: 0 },
    state: 'SANDBOX_READY',
    createdAt: '1',
    labels: {},
    annotations: {},
    runtimeHandler: '',
    hostname: name,
    hostNetwork: false,
    namespaces: { net: `/ns/${id}/net`, uts: `/ns/${id}/uts` },
    network: { ip: '10.88.0.2', additionalIps: [], cniResult: {} },
    files: { dir: '/d', hostname: '/d/h', hosts: '/d/hosts', resolvConf: '/d/r' },
    logDirectory: '',
    portMappings: [],
    config: {},
  };
}

describe('SandboxStore: names, per-pod order, commits', () => {
  /** RunPodSandbox's shape: reserve the name, make things (awaits), record; release on failure. */
  async function run(s: SandboxStore, id: string, name: string, fail = false): Promise<string> {
    const key = `default/${name}/u1/0`;
    s.reserveName(key, id);
    try {
      await tick();
      if (fail) throw new Error('CNI ADD failed');
      await s.add(sandbox(id, name));
      return id;
    } catch (e: unknown) {
      s.releaseName(key, id);
      throw e;
    }
  }

  test('two concurrent RunPodSandbox of one name: exactly one is made, the other ALREADY_EXISTS', async () => {
    const s = new SandboxStore(await dirs.fresh('names'));
    await s.init();
    const results = await Promise.allSettled([run(s, 'a'.repeat(64), 'web'), run(s, 'b'.repeat(64), 'web')]);
    const ok = results.filter((r) => r.status === 'fulfilled');
    const failed = results.filter((r): r is PromiseRejectedResult => r.status === 'rejected');
    assert.equal(ok.length, 1);
    assert.equal(failed.length, 1);
    assert.equal(codeOf(failed[0]!.reason), 'AlreadyExists');
    assert.equal(s.list().length, 1, 'one record, no leak');
  });

  test('a failed RunPodSandbox gives its name back; a removed pod frees it', async () => {
    const s = new SandboxStore(await dirs.fresh('release'));
    await s.init();
    await assert.rejects(run(s, 'a'.repeat(64), 'web', true), /CNI ADD failed/);
    await run(s, 'b'.repeat(64), 'web');
    await assert.rejects(run(s, 'c'.repeat(64), 'web'), (e: unknown) => codeOf(e) === 'AlreadyExists');
    await s.delete('b'.repeat(64));
    await run(s, 'c'.repeat(64), 'web');
  });

  test('a Stop that writes after a Remove does not bring the pod back', async () => {
    const dir = await dirs.fresh('late');
    const s = new SandboxStore(dir);
    await s.init();
    const id = 'a'.repeat(64);
    await s.add(sandbox(id));
    const removing = s.delete(id);
    const stopping = s.modify(id, ({ network: _n, ...r }) => ({ ...r, state: 'SANDBOX_NOTREADY' }));
    await Promise.all([removing, stopping]);
    assert.equal(s.find(id), undefined);
    assert.equal(existsSync(join(dir, `${id}.json`)), false);
    const again = new SandboxStore(dir);
    await again.init();
    assert.deepEqual(again.list(), []);
  });

  test('Stop and UpdatePodSandboxResources at once: both changes are kept', async () => {
    const s = new SandboxStore(await dirs.fresh('both'));
    await s.init();
    const id = 'a'.repeat(64);
    await s.add(sandbox(id));
    await Promise.all([
      s.modify(id, ({ network: _n, ...r }) => ({ ...r, state: 'SANDBOX_NOTREADY' })),
      s.modify(id, (r) => ({ ...r, resources: { notEnforced: 'x' } })),
    ]);
    const r = s.get(id);
    assert.equal(r.state, 'SANDBOX_NOTREADY');
    assert.equal(r.network, undefined, 'the network stays released');
    assert.deepEqual(r.resources, { notEnforced: 'x' });
  });

  test('a container commit after the pod was closed (Stop began) is refused FAILED_PRECONDITION; after Remove, NOT_FOUND', async () => {
    const s = new SandboxStore(await dirs.fresh('commit'));
    await s.init();
    const id = 'a'.repeat(64);
    await s.add(sandbox(id));
    let committed = 0;
    const commit = (): Promise<void> => s.whileReady(id, async () => void committed++);
    await commit();
    const closing = s.closeToContainers(id);
    const late = commit();
    await closing;
    await assert.rejects(late, (e: unknown) => codeOf(e) === 'FailedPrecondition');
    assert.equal(codeOf(s.notReadyError(id, 'runc: no such file')), 'FailedPrecondition');
    await s.delete(id);
    await assert.rejects(commit(), (e: unknown) => codeOf(e) === 'NotFound');
    assert.equal(committed, 1);
    const gone = s.notReadyError(id, 'runc: netns: no such file');
    assert.equal(codeOf(gone), 'NotFound');
    assert.match(gone!.message, /removed while the container was being created \(runc: netns: no such file\)/);
  });
});

describe('SharedJobs', () => {
  test('one caller leaving does not stop the work; the last one leaving does', async () => {
    const jobs = new SharedJobs();
    let workSignal: AbortSignal | undefined;
    let finish!: () => void;
    const work = (signal: AbortSignal): Promise<void> => {
      workSignal = signal;
      return new Promise<void>((resolve, reject) => {
        finish = resolve;
        signal.addEventListener('abort', () => reject(signal.reason as Error));
      });
    };
    const a = new AbortController();
    const b = new AbortController();
    const first = jobs.run('k', work, a.signal);
    const second = jobs.run('k', work, b.signal);
    a.abort(new Error('first caller cancelled'));
    await assert.rejects(first, /first caller cancelled/);
    assert.equal(workSignal!.aborted, false, 'the work goes on for the second caller');
    finish();
    await second;

    const c = new AbortController();
    const only = jobs.run('k2', work, c.signal);
    await tick();
    c.abort(new Error('gone'));
    await assert.rejects(only, /gone/);
    assert.equal(workSignal!.aborted, true, 'nobody waits: the work is stopped');
    const fresh = jobs.run('k2', async () => {});
    await fresh;
    assert.equal(jobs.size, 0);
  });
});

// An image source in memory whose blobs can be held back (a gate) or made to fail.
interface Img {
  ref: string;
  configDigest: string;
  layers: Array<{ blob: Buffer; diffId: string; digest: string }>;
}

class GatedSource implements ContentSource {
  readonly blobs = new Map<string, Buffer>();
  readonly manifests = new Map<string, { bytes: Buffer; digest: string }>();
  readonly gates = new Map<string, Promise<void>>();
  readonly failing = new Set<string>();
  readonly opened = new Map<string, number>();

  add(img: Img, config: Buffer, manifest: Buffer): void {
    this.blobs.set(img.configDigest, config);
    for (const l of img.layers) this.blobs.set(l.digest, l.blob);
    const r = parseReference(img.ref);
    this.manifests.set(`${r.domain}/${r.path}:${r.tag}`, { bytes: manifest, digest: sha256(manifest) });
  }

  gate(digest: string): () => void {
    let open!: () => void;
    this.gates.set(digest, new Promise<void>((r) => (open = r)));
    return open;
  }

  async manifest(ref: ReturnType<typeof parseReference>): Promise<{ bytes: Buffer; mediaType: string; digest: string }> {
    const m = this.manifests.get(`${ref.domain}/${ref.path}:${ref.tag}`)!;
    return { ...m, mediaType: mediaTypes.ociManifest };
  }

  async blob(digest: string, _size: number, signal?: AbortSignal): Promise<Readable> {
    this.opened.set(digest, (this.opened.get(digest) ?? 0) + 1);
    const bytes = this.blobs.get(digest)!;
    const gate = this.gates.get(digest);
    const failing = this.failing.has(digest);
    return Readable.from(
      (async function* () {
        yield bytes.subarray(0, 8);
        if (gate) await gate;
        signal?.throwIfAborted();
        if (failing) throw new Error(`registry cut ${digest}`);
        yield bytes.subarray(8);
      })(),
    );
  }
}

async function imageOf(repoTag: string, files: Array<Record<string, string>>): Promise<{ img: Img; config: Buffer; manifest: Buffer }> {
  const layers = await Promise.all(files.map(async (f) => {
    const l = await layerOf(f);
    return { ...l, digest: sha256(l.blob) };
  }));
  const config = Buffer.from(JSON.stringify({ architecture: 'amd64', os: 'linux', config: {}, rootfs: { type: 'layers', diff_ids: layers.map((l) => l.diffId) } }));
  const configDigest = sha256(config);
  const manifest = Buffer.from(
    JSON.stringify({
      schemaVersion: 2,
      mediaType: mediaTypes.ociManifest,
      config: { mediaType: mediaTypes.ociConfig, digest: configDigest, size: config.length },
      layers: layers.map((l) => ({ mediaType: mediaTypes.ociLayerGzip, digest: l.digest, size: l.blob.length })),
    }),
  );
  return { img: { ref: repoTag, configDigest, layers }, config, manifest };
}

async function service(name: string): Promise<{ svc: ImageService; content: ContentStore; layers: LayerStore; src: GatedSource }> {
  const root = await dirs.fresh(name);
  const content = new ContentStore(join(root, 'content'));
  const images = new ImageStore(join(root, 'records'));
  const layers = new LayerStore({ root: join(root, 'snapshots'), snapshotter: 'overlayfs', log: silentLogger, tools: {}, preserveOwnership: false });
  await Promise.all([content.init(), images.init(), layers.init()]);
  const svc = new ImageService({ content, images, layers, registry: {} as RegistryClient, log: silentLogger, scratchDir: join(root, 'tmp') });
  return { svc, content, layers, src: new GatedSource() };
}

/** Every blob and layer of `img` is there (a container could be made of it). */
async function whole(t: { content: ContentStore; layers: LayerStore }, img: Img): Promise<void> {
  assert.equal(await t.content.has(img.configDigest), true, 'config blob');
  for (const l of img.layers) assert.equal(await t.content.has(l.digest), true, `blob ${l.digest}`);
  for (const c of chainIds(img.layers.map((l) => l.diffId))) {
    assert.equal(await t.layers.has(c), true, `layer ${c}`);
    assert.equal(existsSync(t.layers.fsPath(c)), true);
  }
}

const base = { 'etc/base': 'base' };

describe('ImageService leases: GC and cleanup never take what a pull or a create in progress uses', () => {
  test('RemoveImage of the only other image using a layer, while a pull that found that layer present is still fetching', async () => {
    const t = await service('remove-vs-pull');
    const a = await imageOf('example.test/a:1', [base]);
    const b = await imageOf('example.test/b:1', [base, { 'etc/b': 'b' }]);
    t.src.add(a.img, a.config, a.manifest);
    t.src.add(b.img, b.config, b.manifest);
    await t.svc.install(parseReference(a.img.ref), t.src);
    const open = t.src.gate(b.img.layers[1]!.digest);
    const pulling = t.svc.install(parseReference(b.img.ref), t.src);
    while ((t.src.opened.get(b.img.layers[1]!.digest) ?? 0) === 0) await tick();
    await t.svc.remove(a.img.ref);
    await t.svc.collectGarbage();
    open();
    await pulling;
    await whole(t, b.img);
  });

  test('collectGarbage while a pull has fetched and unpacked some layers but has no record yet', async () => {
    const t = await service('gc-vs-pull');
    const b = await imageOf('example.test/b:1', [base, { 'etc/b': 'b' }]);
    t.src.add(b.img, b.config, b.manifest);
    const open = t.src.gate(b.img.layers[1]!.digest);
    const pulling = t.svc.install(parseReference(b.img.ref), t.src);
    const first = chainIds([b.img.layers[0]!.diffId])[0]!;
    while (!(await t.layers.has(first))) await tick();
    await t.svc.collectGarbage();
    open();
    await pulling;
    await whole(t, b.img);
    assert.deepEqual(t.svc.leased(), [], 'no lease outlives its pull');
  });

  test("a failed pull's cleanup keeps a layer it added that another pull in progress uses", async () => {
    const t = await service('discard-vs-pull');
    const b = await imageOf('example.test/b:1', [base, { 'etc/b': 'b' }]);
    const c = await imageOf('example.test/c:1', [base, { 'etc/c': 'c' }]);
    t.src.add(b.img, b.config, b.manifest);
    t.src.add(c.img, c.config, c.manifest);
    const openB = t.src.gate(b.img.layers[1]!.digest);
    t.src.failing.add(c.img.layers[1]!.digest);
    const pullingB = t.svc.install(parseReference(b.img.ref), t.src);
    await assert.rejects(t.svc.install(parseReference(c.img.ref), t.src), /registry cut/);
    openB();
    await pullingB;
    await whole(t, b.img);
    assert.equal(await t.content.has(c.img.layers[1]!.digest), false, "the failed pull's own blob is gone");
  });

  test('a create holding a lease keeps the layers of an image removed meanwhile; released, gc takes them', async () => {
    const t = await service('create-vs-remove');
    const a = await imageOf('example.test/a:1', [base]);
    t.src.add(a.img, a.config, a.manifest);
    const rec = await t.svc.install(parseReference(a.img.ref), t.src);
    const lease = t.svc.lease([rec.id], 'create test');
    await t.svc.remove(a.img.ref);
    await t.svc.collectGarbage();
    await whole(t, a.img);
    assert.throws(() => t.svc.lease([rec.id], 'late create'), (e: unknown) => codeOf(e) === 'NotFound');
    lease.release();
    await t.svc.collectGarbage();
    assert.equal(await t.content.has(a.img.layers[0]!.digest), false);
    assert.equal(await t.layers.has(chainIds([a.img.layers[0]!.diffId])[0]!), false);
  });

  test('two pulls of one image share one fetch; the first cancelled, the second completes', async () => {
    const t = await service('shared-pull');
    const b = await imageOf('example.test/b:1', [base, { 'etc/b': 'b' }]);
    t.src.add(b.img, b.config, b.manifest);
    const slow = b.img.layers[1]!.digest;
    const open = t.src.gate(slow);
    const first = new AbortController();
    const p1 = t.svc.install(parseReference(b.img.ref), t.src, first.signal);
    const p2 = t.svc.install(parseReference(b.img.ref), t.src, new AbortController().signal);
    while ((t.src.opened.get(slow) ?? 0) === 0) await tick();
    await tick();
    first.abort(new Error('kubelet gave up'));
    await assert.rejects(p1, /kubelet gave up/);
    open();
    const rec = await p2;
    assert.equal(rec.id, b.img.configDigest);
    assert.equal(t.src.opened.get(slow), 1, 'one fetch for both');
    await whole(t, b.img);
  });
});
