import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { fileURLToPath } from 'node:url';

import { exec } from '../lib/agent.js';

// The last line of defence: a throw in a timer and a rejected promise nobody
// awaits are logged with their stack and counted, and the process goes on
// (before, either one ended the runtime half and every CRI call in flight).

const guard = fileURLToPath(new URL('../../pkg/log/process_guard.js', import.meta.url));
const registry = fileURLToPath(new URL('../../pkg/metrics/registry.js', import.meta.url));
const logger = fileURLToPath(new URL('../../pkg/log/logger.js', import.meta.url));

describe('the process guard', () => {
  test('an uncaught exception and an unhandled rejection are logged with their stack, counted, and the process keeps running', async () => {
    const script = `
      const { guardProcess } = await import(${JSON.stringify(guard)});
      const { createRegistry, countUncaught } = await import(${JSON.stringify(registry)});
      const { createLogger } = await import(${JSON.stringify(logger)});
      const registry = createRegistry('runtime', '0');
      guardProcess(createLogger({ level: 'info', component: 'runtime' }), (k) => countUncaught(registry, k));
      setTimeout(() => { throw new Error('thrown in a timer'); }, 10);
      setTimeout(() => { void Promise.reject(new Error('rejected, unheard')); }, 20);
      setTimeout(async () => {
        const text = await registry.metrics();
        console.log(text.split('\\n').filter((l) => l.startsWith('usernode_runtime_uncaught_errors_total')).join('\\n'));
        console.log('still serving');
      }, 100);
    `;
    const r = await exec(process.execPath, ['--input-type=module', '-e', script]);
    assert.equal(r.code, 0, r.stderr);
    assert.match(r.stdout, /still serving/);
    assert.match(r.stdout, /usernode_runtime_uncaught_errors_total\{kind="exception"\} 1/);
    assert.match(r.stdout, /usernode_runtime_uncaught_errors_total\{kind="rejection"\} 1/);
    assert.match(r.stderr, /level=error component=runtime msg="uncaught exception; still serving" error="Error: thrown in a timer\\n    at /);
    assert.match(r.stderr, /msg="unhandled promise rejection; still serving" error="Error: rejected, unheard\\n    at /);
  });
});
