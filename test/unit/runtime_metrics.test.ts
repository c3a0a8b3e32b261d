import assert from 'node:assert/strict';
import { describe, test } from 'node:test';

import { Registry } from 'prom-client';

import type { CriClients } from '../../proto/client.js';
import { listMetricDescriptors } from '../../pkg/cri/metric_descriptors_list.js';
import { runtimeMetrics, type RuntimeFacts } from '../../pkg/metrics/runtime.js';
import { sharedExposition } from '../../pkg/metrics/server.js';
import { cadvisorExposition } from '../../pkg/node/kubelet_metrics.js';

// The runtime's rootless metrics, read at scrape time from fakes; the
// exposition sharing that keeps scrapes off the runtime during churn; and the
// cadvisor rendering's labels.

const value = (text: string, series: string): number | undefined => {
  const line = text.split('\n').find((l) => l.startsWith(`${series} `));
  return line === undefined ? undefined : Number(line.slice(series.length + 1));
};

function facts(over: Partial<RuntimeFacts> = {}): RuntimeFacts {
  return {
    snapshotter: 'overlayfs',
    unenforced: ['cpu', 'memory', 'pids', 'hugepages'],
    uplink: async () => ({ rxBytes: 1234n, txBytes: 99n }),
    portForwards: async () => [{ protocol: 'tcp' }, { protocol: 'tcp' }, { protocol: 'udp' }],
    sandboxes: () => [{ state: 'SANDBOX_READY' }, { state: 'SANDBOX_NOTREADY' }, { state: 'SANDBOX_READY' }],
    containers: () => [{ state: 'CONTAINER_RUNNING' }, { state: 'CONTAINER_EXITED' }],
    ...over,
  };
}

describe('runtime metrics', () => {
  test('say what rootless mode could not enforce, the snapshotter, userspace network bytes, forwards and states', async () => {
    const registry = new Registry();
    let rx = 1234n;
    runtimeMetrics(registry, facts({ uplink: async () => ({ rxBytes: rx, txBytes: 99n }) }));
    const text = await registry.metrics();
    assert.equal(value(text, 'usernode_unenforced_limit{limit="memory"}'), 1);
    assert.equal(value(text, 'usernode_unenforced_limit{limit="pids"}'), 1);
    assert.equal(value(text, 'usernode_snapshotter_info{snapshotter="overlayfs"}'), 1);
    assert.equal(value(text, 'usernode_userspace_network_receive_bytes_total'), 1234);
    assert.equal(value(text, 'usernode_userspace_network_transmit_bytes_total'), 99);
    assert.equal(value(text, 'usernode_port_forwards{protocol="tcp"}'), 2);
    assert.equal(value(text, 'usernode_port_forwards{protocol="udp"}'), 1);
    assert.equal(value(text, 'usernode_pod_sandboxes{state="ready"}'), 2);
    assert.equal(value(text, 'usernode_pod_sandboxes{state="notready"}'), 1);
    assert.equal(value(text, 'usernode_containers{state="running"}'), 1);
    assert.equal(value(text, 'usernode_containers{state="created"}'), 0, 'every state is there, at 0 when none');
    rx = 5000n;
    assert.equal(value(await registry.metrics(), 'usernode_userspace_network_receive_bytes_total'), 5000, 'each scrape reads the kernel counter anew');
  });

  test('a host that enforces limits shows 0 for them', async () => {
    const registry = new Registry();
    runtimeMetrics(registry, facts({ unenforced: ['hugepages'] }));
    const text = await registry.metrics();
    assert.equal(value(text, 'usernode_unenforced_limit{limit="cpu"}'), 0);
    assert.equal(value(text, 'usernode_unenforced_limit{limit="hugepages"}'), 1);
  });

  test('a rootlesskit API that hangs or fails costs a stale value, not a stuck scrape', async () => {
    const registry = new Registry();
    let mode: 'ok' | 'hang' | 'fail' = 'ok';
    runtimeMetrics(
      registry,
      facts({
        portForwards: () => (mode === 'ok' ? Promise.resolve([{ protocol: 'tcp' }]) : mode === 'hang' ? new Promise(() => {}) : Promise.reject(new Error('api.sock: ECONNREFUSED'))),
        uplink: () => (mode === 'hang' ? new Promise(() => {}) : Promise.resolve({ rxBytes: 10n, txBytes: 20n })),
      }),
      { deadlineMs: 50 },
    );
    assert.equal(value(await registry.metrics(), 'usernode_port_forwards{protocol="tcp"}'), 1);
    mode = 'hang';
    const t0 = Date.now();
    const text = await registry.metrics();
    assert.ok(Date.now() - t0 < 1000, `the scrape took ${Date.now() - t0} ms`);
    assert.equal(value(text, 'usernode_port_forwards{protocol="tcp"}'), 1);
    assert.equal(value(text, 'usernode_userspace_network_receive_bytes_total'), 10);
    mode = 'fail';
    assert.equal(value(await registry.metrics(), 'usernode_port_forwards{protocol="tcp"}'), 1);
  });
});

describe('shared exposition', () => {
  test('scrapes together make one render; a fresh one is served again; a slow one gets the last', async () => {
    let renders = 0;
    let release: (() => void) | undefined;
    let ms = 0;
    const render = (): Promise<string> =>
      new Promise((resolve) => {
        const n = ++renders;
        release = () => resolve(`body ${n}\n`);
      });
    const shared = sharedExposition(render, { maxAgeMs: 1000, timeoutMs: 50, now: () => ms });
    const [a, b] = [shared(), shared()];
    release!();
    assert.deepEqual(await Promise.all([a, b]), ['body 1\n', 'body 1\n']);
    assert.equal(renders, 1);
    ms = 500;
    assert.equal(await shared(), 'body 1\n');
    assert.equal(renders, 1, 'younger than maxAge: served from the cache');
    ms = 2000;
    assert.equal(await shared(), 'body 1\n', 'the render hangs: the last one is served after the deadline');
    assert.equal(renders, 2);
    assert.equal(await shared(), 'body 1\n');
    assert.equal(renders, 2, 'no second render while one is under way');
    release!();
    await new Promise((r) => setImmediate(r));
    ms = 2100;
    assert.equal(await shared(), 'body 2\n');
  });

  test('with nothing made yet, a slow render fails the scrape with the reason', async () => {
    const shared = sharedExposition(() => new Promise(() => {}), { timeoutMs: 20 });
    await assert.rejects(shared(), /took longer than 20 ms/);
  });
});

describe('cadvisor exposition', () => {
  type Cb = (err: Error | null, res?: unknown) => void;
  const metric = (name: string, labelValues: string[], v: string) => ({ name, timestamp: '1764583200000000000', metricType: name.endsWith('_total') ? 'COUNTER' : 'GAUGE', labelValues, value: { value: v } });
  const criWith = (pods: unknown[]): CriClients => {
    const runtime = {
      ListMetricDescriptors: (_req: unknown, cb: Cb) => void listMetricDescriptors().then((d) => cb(null, d)),
      ListPodSandboxMetrics: (_req: unknown, cb: Cb) => cb(null, { podMetrics: pods }),
    };
    return { runtime } as unknown as CriClients;
  };
  const pod = (id: string, name: string) => ({
    podSandboxId: id,
    metrics: [metric('container_network_receive_bytes_total', [id, name, '', 'team-a', name, '', 'eth0'], '5000')],
    containerMetrics: [
      {
        containerId: `${id}-c`,
        metrics: [
          metric('container_cpu_usage_seconds_total', [`${id}-c`, 'app', 'busybox:1', 'team-a', name, 'app', 'total'], '3'),
          metric('container_memory_working_set_bytes', [`${id}-c`, 'app', 'busybox:1', 'team-a', name, 'app'], '4096'),
        ],
      },
    ],
  });

  test('series carry the labels dashboards select on; a removed pod has none', async () => {
    const text = await cadvisorExposition(criWith([pod('p1', 'web'), pod('p2', 'db')]));
    assert.match(text, /^container_cpu_usage_seconds_total\{id="p1-c",name="app",image="busybox:1",namespace="team-a",pod="web",container="app",cpu="total"\} 3 1764583200000$/m);
    assert.match(text, /^container_memory_working_set_bytes\{[^}]*namespace="team-a",pod="db",container="app"\} 4096 /m);
    assert.match(text, /^container_network_receive_bytes_total\{id="p1",name="web",image="",namespace="team-a",pod="web",container="",interface="eth0"\} 5000 /m);
    assert.match(text, /^# TYPE container_cpu_usage_seconds_total counter$/m);
    const after = await cadvisorExposition(criWith([pod('p2', 'db')]));
    assert.doesNotMatch(after, /pod="web"/);
    assert.match(after, /pod="db"/);
  });
});
