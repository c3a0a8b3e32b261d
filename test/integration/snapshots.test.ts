import assert from 'node:assert/strict';
import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';

import { chainIds } from '../../pkg/image/layer_store.js';
import { type AgentProcess, requiredEnv, TestNode } from '../lib/agent.js';

// What a container will see of a multi-layer image: lower files deleted by a
// whiteout stay gone, an opaque folder shows only the upper layer's files. Once
// with overlayfs (the layers mounted as lowers inside the node namespace, as
// containers will get them), once with the copy snapshotter (the merged tree
// is on disk).

interface Entry {
  reference: string;
  layers: Array<{ diffId: string }>;
  expect: { files: Record<string, string>; absent: string[] };
}

for (const snapshotter of ['overlayfs', 'copy'] as const) {
  describe(`usernode snapshots (${snapshotter}): whiteouts and opaque folders`, () => {
    let node: TestNode;
    let agent: AgentProcess;
    let image: Entry;

    before(async () => {
      const bed = JSON.parse(readFileSync(requiredEnv('USERNODE_TEST_IMAGES'), 'utf8')) as { registry: string; images: Record<string, Entry> };
      image = bed.images[`${bed.registry}/usernode/multilayer:latest`]!;
      assert.ok(image?.expect, 'the multilayer test image says what it should look like');
      node = await TestNode.create();
      await node.writeConfig(`snapshotter: ${snapshotter}\nregistries:\n  "${bed.registry}": { plainHttp: true }\n`);
      agent = node.start();
      await agent.ready();
    });

    after(async () => {
      agent?.child.kill('SIGTERM');
      await node?.destroy();
    });

    it(`uses the ${snapshotter} snapshotter, as crictl info says`, async () => {
      const r = await node.crictl(['info']);
      assert.equal(r.code, 0, r.stderr);
      assert.equal((JSON.parse(r.stdout) as { snapshotter: { snapshotter: string } }).snapshotter.snapshotter, snapshotter);
    });

    it('shows the merged image the way the layers say', async () => {
      const pull = await node.crictl(['pull', image.reference]);
      assert.equal(pull.code, 0, pull.stderr);
      const layers = join(node.dir, 'data', 'usernode', 'snapshots', 'layers');
      const chains = chainIds(image.layers.map((l) => l.diffId)).map((c) => join(layers, c.slice('sha256:'.length), 'fs'));
      let read: (path: string) => Promise<string | undefined>;
      let cleanup = async (): Promise<void> => {};
      if (snapshotter === 'copy') {
        const top = chains[chains.length - 1]!;
        read = async (p) => (existsSync(join(top, p)) ? readFileSync(join(top, p), 'utf8') : undefined);
      } else {
        const merged = join(node.dir, 'merged');
        const lowers = [...chains].reverse().join(':');
        const m = await node.enter(['sh', '-c', `mkdir -p ${merged} && mount -t overlay overlay -o ro,userxattr,lowerdir=${lowers} ${merged}`]);
        assert.equal(m.code, 0, `overlay mount of the layers failed: ${m.stderr}`);
        read = async (p) => {
          const r = await node.enter(['sh', '-c', `test -e ${join(merged, p)} || test -L ${join(merged, p)} || exit 3; cat ${join(merged, p)}`]);
          return r.code === 3 ? undefined : r.stdout;
        };
        cleanup = async () => {
          await node.enter(['umount', merged]);
        };
      }
      try {
        for (const [p, content] of Object.entries(image.expect.files)) assert.equal(await read(p), content, `${p} in the merged image`);
        for (const p of image.expect.absent) assert.equal(await read(p), undefined, `${p} shows through although a layer removed it`);
      } finally {
        await cleanup();
      }
    });
  });
}
