import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { test } from 'node:test';

import { listMetricDescriptors } from '../../pkg/cri/metric_descriptors_list.js';
import { criMetrics } from '../../pkg/metrics/cri.js';
import { imageMetrics } from '../../pkg/metrics/image.js';
import { createRegistry } from '../../pkg/metrics/registry.js';
import { runtimeMetrics } from '../../pkg/metrics/runtime.js';
import { nodeMetrics } from '../../pkg/node/metrics.js';
import { repoRoot } from '../lib/agent.js';

// Every metric the agent exports is named in the README's Metrics section
// (an operator's list to write alerts against), and the two halves' metrics,
// served as one exposition, never declare a family twice.

async function expositions(): Promise<{ node: string; runtime: string }> {
  const node = createRegistry('node', '0.0.0');
  nodeMetrics(node, { nodeName: 'n' });
  const runtime = createRegistry('runtime', '0.0.0');
  criMetrics(runtime);
  imageMetrics(runtime);
  runtimeMetrics(runtime, { snapshotter: 'copy', unenforced: [], uplink: async () => undefined, portForwards: async () => [], sandboxes: () => [], containers: () => [] });
  return { node: await node.metrics(), runtime: await runtime.metrics() };
}

const families = (text: string): string[] => [...text.matchAll(/^# TYPE (\S+) /gm)].map((m) => m[1]!);

test('the README names every exported metric', async () => {
  const readme = readFileSync(join(repoRoot, 'README.md'), 'utf8');
  const section = /^## Metrics\n([\s\S]*?)^## /m.exec(readme)?.[1] ?? '';
  assert.ok(section, 'the README has a Metrics section');
  const { node, runtime } = await expositions();
  const cadvisor = (await listMetricDescriptors()).descriptors!.map((d) => d.name!);
  const named = (name: string): boolean => section.includes(`\`${name}\``) || section.includes(`\`${name}{`) || (name.startsWith('usernode_runtime_') && section.includes(`\`${name.slice('usernode_runtime_'.length)}\``));
  assert.deepEqual([...families(node), ...families(runtime), ...cadvisor].filter((n) => !named(n)), []);
});

test('the node and runtime halves never declare the same family', async () => {
  const { node, runtime } = await expositions();
  const all = [...families(node), ...families(runtime)];
  assert.deepEqual(all.filter((n, i) => all.indexOf(n) !== i), []);
  assert.ok(!all.some((n) => /^nodejs_active_\w+_total$/.test(n)), "prom-client's _total gauges are left out");
});
