import { collectDefaultMetrics, Gauge, Registry } from 'prom-client';

// One registry per process half. The runtime half's process metrics carry a
// prefix so the node half can serve both in one exposition without a name
// appearing twice.

export function createRegistry(half: 'node' | 'runtime', version: string): Registry {
  const registry = new Registry();
  collectDefaultMetrics({ register: registry, ...(half === 'runtime' ? { prefix: 'usernode_runtime_' } : {}) });
  if (half === 'node') {
    const info = new Gauge({ name: 'usernode_build_info', help: 'usernode build information; always 1.', labelNames: ['version', 'nodejs'], registers: [registry] });
    info.set({ version, nodejs: process.version }, 1);
  }
  return registry;
}
