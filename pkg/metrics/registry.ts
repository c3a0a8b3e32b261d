import { collectDefaultMetrics, Counter, Gauge, Registry } from 'prom-client';

// One registry per process half. The runtime half's process metrics carry a
// prefix so the node half can serve both in one exposition without a name
// appearing twice.

// prom-client's default gauges that end in _total: a gauge named like a
// counter fails `promtool check metrics` (and breaks rate() users), and each
// is only the sum of its unsuffixed twin by type (nodejs_active_handles{type}).
const gaugesNamedTotal = ['nodejs_active_handles_total', 'nodejs_active_requests_total', 'nodejs_active_resources_total'];

const uncaught = new WeakMap<Registry, Counter<'kind'>>();

export function createRegistry(half: 'node' | 'runtime', version: string): Registry {
  const registry = new Registry();
  const prefix = half === 'runtime' ? 'usernode_runtime_' : '';
  collectDefaultMetrics({ register: registry, prefix });
  for (const name of gaugesNamedTotal) registry.removeSingleMetric(prefix + name);
  const escaped = new Counter({
    name: `${half === 'runtime' ? 'usernode_runtime' : 'usernode_node'}_uncaught_errors_total`,
    help: 'Errors that escaped every handler (uncaught exceptions, unhandled promise rejections), logged with their stack; the process kept serving. Each is a bug to report.',
    labelNames: ['kind'],
    registers: [registry],
  });
  // Both series from the start, so an alert on increase() sees the first one.
  for (const kind of ['exception', 'rejection']) escaped.inc({ kind }, 0);
  uncaught.set(registry, escaped);
  if (half === 'node') {
    const info = new Gauge({ name: 'usernode_build_info', help: 'usernode build information; always 1.', labelNames: ['version', 'nodejs'], registers: [registry] });
    info.set({ version, nodejs: process.version }, 1);
  }
  return registry;
}

/** Counts an error that escaped every handler (pkg/log/process_guard.ts) in `registry`'s half. */
export function countUncaught(registry: Registry, kind: 'exception' | 'rejection'): void {
  uncaught.get(registry)?.inc({ kind });
}
