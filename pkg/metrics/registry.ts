import { collectDefaultMetrics, Gauge, Registry } from 'prom-client';

// One registry per process half. The runtime half's process metrics carry a
// prefix so the node half can serve both in one exposition without a name
// appearing twice.

// prom-client's default gauges that end in _total: a gauge named like a
// counter fails `promtool check metrics` (and breaks rate() users), and each
// is only the sum of its unsuffixed twin by type (nodejs_active_handles{type}).
const gaugesNamedTotal = ['nodejs_active_handles_total', 'nodejs_active_requests_total', 'nodejs_active_resources_total'];

export function createRegistry(half: 'node' | 'runtime', version: string): Registry {
  const registry = new Registry();
  const prefix = half === 'runtime' ? 'usernode_runtime_' : '';
  collectDefaultMetrics({ register: registry, prefix });
  for (const name of gaugesNamedTotal) registry.removeSingleMetric(prefix + name);
  if (half === 'node') {
    const info = new Gauge({ name: 'usernode_build_info', help: 'usernode build information; always 1.', labelNames: ['version', 'nodejs'], registers: [registry] });
    info.set({ version, nodejs: process.version }, 1);
  }
  return registry;
}
