import { execFileSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { createReadStream } from 'node:fs';
import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { Writable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { parseArgs } from 'node:util';
import { createGunzip } from 'node:zlib';

import { extract } from 'tar-stream';

import { LayerStore } from '../pkg/image/layer_store.js';
import { silentLogger } from '../pkg/log/logger.js';
import { buildRandomImage } from './lib/random_image.js';

// Where usernode's unpack time goes, without a registry or a node: the image
// benchmark's layers (bench/lib/random_image.ts) unpacked by the agent's own
// LayerStore (overlayfs layout, as the calling user, ownership not kept), next
// to the bare stages of the same path (read + gunzip + sha256, + tar parsing)
// and gunzip at larger output chunk sizes. Prints times; asserts none.
//   node dist/bench/unpack_layers.js [--dir /tmp] [--layers 5] [--layer-mib 20]
// For a profile: node --cpu-prof dist/bench/unpack_layers.js; for syscalls: strace -f -c.

async function main(): Promise<void> {
  const { values } = parseArgs({
    options: { dir: { type: 'string', default: '/tmp' }, layers: { type: 'string', default: '5' }, 'layer-mib': { type: 'string', default: '20' } },
    strict: true,
  });
  const work = await mkdtemp(`${values.dir}/usernode-unpack-`);
  try {
    const img = await buildRandomImage({ seed: 'usernode-bench-v1', layers: Number(values.layers), layerBytes: Number(values['layer-mib']) * 2 ** 20 });
    const blobs: Array<{ path: string; diffId: string }> = [];
    await mkdir(`${work}/blobs`);
    for (const [i, l] of img.built.layers.entries()) {
      const path = `${work}/blobs/${i}`;
      await writeFile(path, l.blob.bytes);
      blobs.push({ path, diffId: l.diffId });
    }
    const first = blobs[0]!;
    const time = async (what: string, f: () => Promise<unknown>): Promise<void> => {
      execFileSync('sync');
      const t = process.hrtime.bigint();
      await f();
      console.log(`${what.padEnd(58)} ${(Number(process.hrtime.bigint() - t) / 1e6).toFixed(0).padStart(6)} ms`);
    };
    const gunzipHash = async (chunkSize?: number): Promise<void> => {
      const h = createHash('sha256');
      const sink = new Writable({ write: (c: Buffer, _e, cb) => (h.update(c), cb()) });
      await pipeline(createReadStream(first.path), createGunzip(chunkSize ? { chunkSize } : {}), sink);
    };
    console.log(`${img.built.layers.length} layers of ${(img.compressedBytes / img.built.layers.length / 1e6).toFixed(1)} MB, ${img.files / img.built.layers.length} files each`);
    await gunzipHash(); // warm the page cache and the JIT
    await time('1 layer: read + gunzip (16 KiB chunks, the default) + sha256', () => gunzipHash());
    await time('1 layer: read + gunzip (256 KiB chunks) + sha256', () => gunzipHash(256 * 1024));
    await time('1 layer: read + gunzip (1 MiB chunks) + sha256', () => gunzipHash(1024 * 1024));
    await time('1 layer: read + gunzip + tar parse, data discarded', async () => {
      const x = extract();
      const feeding = pipeline(createReadStream(first.path), createGunzip(), x);
      for await (const member of x) for await (const _ of member) void _;
      await feeding;
    });
    const store = new LayerStore({ root: `${work}/snapshots`, snapshotter: 'overlayfs', log: silentLogger, tools: {}, preserveOwnership: false });
    await store.init();
    let n = 0;
    const chain = (): string => `sha256:${createHash('sha256').update(String(n++)).digest('hex')}`;
    await time('1 layer: LayerStore.unpack', () => store.unpack(chain(), undefined, first.diffId, first.path));
    await time(`${blobs.length} layers: LayerStore.unpack, all at once (as a pull does)`, () =>
      Promise.all(blobs.map((b) => store.unpack(chain(), undefined, b.diffId, b.path))),
    );
    await time(`${blobs.length} layers: LayerStore.unpack, one after another`, async () => {
      for (const b of blobs) await store.unpack(chain(), undefined, b.diffId, b.path);
    });
    // What making a layer durable before it counts costs (syncfs, the default, against an fsync of each
    // file, and nothing): 5 rounds, the three alternating, medians (the page cache is flushed before each).
    const modes = ['none', 'syncfs', 'fsync'] as const;
    const took = new Map<string, number[]>(modes.map((m) => [m, []]));
    for (let round = 0; round < 5; round++) {
      for (const durability of modes) {
        const d = new LayerStore({ root: `${work}/snapshots-${durability}-${round}`, snapshotter: 'overlayfs', log: silentLogger, tools: {}, preserveOwnership: false, durability });
        await d.init();
        execFileSync('sync');
        const t = process.hrtime.bigint();
        await Promise.all(blobs.map((b) => d.unpack(chain(), undefined, b.diffId, b.path)));
        took.get(durability)!.push(Number(process.hrtime.bigint() - t) / 1e6);
        await rm(`${work}/snapshots-${durability}-${round}`, { recursive: true, force: true });
      }
    }
    for (const [m, xs] of took) {
      const sorted = [...xs].sort((a, b) => a - b);
      console.log(`${`${blobs.length} layers: LayerStore.unpack, all at once, durability ${m} (median of 5)`.padEnd(58)} ${sorted[2]!.toFixed(0).padStart(6)} ms  [${xs.map((x) => x.toFixed(0)).join(' ')}]`);
    }
  } finally {
    await rm(work, { recursive: true, force: true });
  }
}

main().catch((e: unknown) => {
  console.error(`unpack_layers: ${e instanceof Error ? (e.stack ?? e.message) : String(e)}`);
  process.exit(1);
});
