import assert from 'node:assert/strict';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, test } from 'node:test';

import { createLogger } from '../../pkg/log/logger.js';
import type { PodManifest } from '../../pkg/node/pod_manifest.js';
import { StaticPods } from '../../pkg/node/static_pods.js';

// The static pod folder: which pods its files give, as files come, change,
// break and go (the watch itself is chokidar's; the integration test drives it).

const pod = (name: string, image = 'busybox:1.36'): string => `apiVersion: v1\nkind: Pod\nmetadata: { name: ${name} }\nspec:\n  containers:\n    - { name: c, image: ${image} }\n`;

async function until(f: () => boolean): Promise<void> {
  for (let i = 0; i < 100 && !f(); i++) await new Promise((r) => setTimeout(r, 50));
  assert.ok(f(), `timed out; logged: ${JSON.stringify((globalThis as { __logged?: string[] }).__logged ?? [])}`);
}

describe('the static pod folder', () => {
  test('a broken file keeps its last pods; a name taken by another file is refused; a removed file takes its pods', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'static-pods-'));
    const seen: PodManifest[][] = [];
    const logged: string[] = [];
    (globalThis as { __logged?: string[] }).__logged = logged;
    const log = createLogger({ level: 'warn', component: 'test', write: (line: string) => void logged.push(line) });
    const sp = new StaticPods(dir, (p) => seen.push(p), log);
    try {
      await writeFile(join(dir, 'a.yaml'), pod('web'));
      await writeFile(join(dir, 'notes.txt'), 'not a manifest');
      await sp.start();
      assert.deepEqual(seen.at(-1)!.map((p) => p.name), ['web']);
      await writeFile(join(dir, 'a.yaml'), 'apiVersion: v1\nkind: Pod\nmetadata: { name: web }\nspec: { containers: [] }\n');
      await until(() => logged.some((l) => l.includes('a.yaml') && l.includes('spec.containers')));
      assert.deepEqual(seen.at(-1)!.map((p) => p.name), ['web'], 'a broken edit took the pod away');
      await writeFile(join(dir, 'b.yaml'), pod('web', 'other:1'));
      await until(() => logged.some((l) => l.includes('b.yaml') && l.includes('already defined')));
      assert.equal(seen.at(-1)!.filter((p) => p.name === 'web').length, 1);
      await rm(join(dir, 'a.yaml'));
      await until(() => seen.at(-1)!.some((p) => p.containers[0]!.image === 'other:1'));
    } finally {
      await sp.stop();
      await rm(dir, { recursive: true, force: true });
    }
  });
});
