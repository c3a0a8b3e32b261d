import assert from 'node:assert/strict';
import { describe, test } from 'node:test';

import { Registry } from 'prom-client';

import { createLogger } from '../../pkg/log/logger.js';
import { nodeMetrics, operationType, podStartBuckets, runtimeOperationBuckets } from '../../pkg/node/metrics.js';
import { PodManager } from '../../pkg/node/pod_manager.js';
import { parseManifest, type PodManifest } from '../../pkg/node/pod_manifest.js';
import { FakeClock, FakeCri } from '../lib/fake_cri.js';

// The node half's kubelet-named metrics, fed by the pod worker against an
// in-memory CRI: what a kubelet dashboard would show for the same pods.

const log = createLogger({ level: 'error', component: 'test', write: () => {} });

const podOf = (name: string, containers = ['app']): PodManifest =>
  parseManifest(`apiVersion: v1\nkind: Pod\nmetadata: { name: ${name}, namespace: team-a }\nspec:\n  containers:\n${containers.map((c) => `    - { name: ${c}, image: "busybox:1" }\n`).join('')}`, `/m/${name}.yaml`)[0]!;

function bed() {
  const clock = new FakeClock();
  const cri = new FakeCri(clock);
  const registry = new Registry();
  const metrics = nodeMetrics(registry, { nodeName: 'node-1', startedAtMs: clock.now() });
  const make = (): PodManager => {
    const pm = new PodManager({
      cri: cri.clients(),
      log,
      logRoot: '/nonexistent/logs',
      volumeRoot: '/nonexistent/pods',
      memoryVolumeRoot: '/nonexistent/memory',
      now: clock.now,
      onCriCall: metrics.criCall,
      onPodRunning: (_p, firstSeenMs, nowMs) => metrics.podRunning(firstSeenMs, nowMs),
    });
    metrics.readPods(() => pm.statuses().values());
    return pm;
  };
  /** The value of one series in the exposition, as Prometheus would read it. */
  const value = async (series: string): Promise<number | undefined> => {
    const line = (await registry.metrics()).split('\n').find((l) => l.startsWith(`${series} `));
    return line === undefined ? undefined : Number(line.slice(series.length + 1));
  };
  return { clock, cri, registry, metrics, pm: make(), make, value };
}

describe('kubelet metrics of the node half', () => {
  test('running pods and containers by state follow the pods the worker runs', async () => {
    const b = bed();
    assert.equal(await b.value('kubelet_running_pods'), 0, 'the gauge is there before any pod');
    b.pm.setDesired([podOf('web', ['app', 'sidecar']), podOf('db')]);
    await b.pm.syncOnce();
    assert.equal(await b.value('kubelet_running_pods'), 2);
    assert.equal(await b.value('kubelet_running_containers{container_state="running"}'), 3);
    assert.equal(await b.value('kubelet_running_containers{container_state="exited"}'), 0);
    assert.equal(await b.value('usernode_pods{phase="Running"}'), 2);
    b.cri.exit('sidecar', 1);
    await b.pm.syncOnce();
    await b.pm.syncOnce();
    assert.equal(await b.value('kubelet_running_containers{container_state="running"}'), 3, 'the sidecar is restarted at once the first time');
    b.pm.setDesired([podOf('db')]);
    await b.pm.syncOnce();
    await b.pm.settled();
    await b.pm.syncOnce();
    assert.equal(await b.value('kubelet_running_pods'), 1, 'a removed pod is no longer counted');
    assert.equal(await b.value('usernode_pods{phase="Running"}'), 1);
  });

  test("counts the worker's CRI calls by kubelet's operation_type, errors apart, with kubelet's buckets", async () => {
    const b = bed();
    b.cri.failNext.set('RunPodSandbox', new Error('no space left'));
    b.pm.setDesired([podOf('web')]);
    await b.pm.syncOnce();
    assert.equal(await b.value('kubelet_runtime_operations_total{operation_type="run_podsandbox"}'), 1);
    assert.equal(await b.value('kubelet_runtime_operations_errors_total{operation_type="run_podsandbox"}'), 1);
    b.clock.advance(60000);
    await b.pm.syncOnce();
    assert.equal(await b.value('kubelet_runtime_operations_total{operation_type="run_podsandbox"}'), 2, 'the retry is counted');
    assert.equal(await b.value('kubelet_runtime_operations_errors_total{operation_type="run_podsandbox"}'), 1);
    assert.equal(await b.value('kubelet_runtime_operations_total{operation_type="start_container"}'), 1);
    assert.equal(await b.value('kubelet_runtime_operations_duration_seconds_count{operation_type="create_container"}'), 1);
    assert.equal(await b.value('kubelet_runtime_operations_duration_seconds_bucket{le="745.0580596923828",operation_type="create_container"}'), 1);
    const text = await b.registry.metrics();
    assert.doesNotMatch(text, /web|team-a/, 'no pod name or namespace is a label of the node metrics');
    assert.equal(await b.value('kubelet_node_name{node="node-1"}'), 1);
  });

  test('pod start duration: from the worker first having the pod to Running, once per pod; adopted pods are not timed', async () => {
    const b = bed();
    b.cri.failNext.set('CreateContainer', new Error('busy'));
    b.pm.setDesired([podOf('web')]);
    await b.pm.syncOnce();
    assert.equal(await b.value('kubelet_pod_start_duration_seconds_count'), 0);
    b.clock.advance(2500);
    await b.pm.syncOnce();
    assert.equal(await b.value('kubelet_pod_start_duration_seconds_count'), 1);
    assert.equal(await b.value('kubelet_pod_start_duration_seconds_bucket{le="2"}'), 0);
    assert.equal(await b.value('kubelet_pod_start_duration_seconds_bucket{le="3"}'), 1);
    await b.pm.syncOnce();
    assert.equal(await b.value('kubelet_pod_start_duration_seconds_count'), 1, 'a pod is timed once');
    // An agent restart: the new worker adopts the running pod, created before it started.
    const registry = new Registry();
    const later = nodeMetrics(registry, { nodeName: 'node-1', startedAtMs: b.clock.now() + 1 });
    later.podRunning(b.clock.now() - 5000, b.clock.now() + 10);
    assert.match(await registry.metrics(), /kubelet_pod_start_duration_seconds_count 0/);
  });

  test("operation types and buckets are kubelet's", () => {
    const kubelet: Record<string, string> = {
      RunPodSandbox: 'run_podsandbox',
      StopPodSandbox: 'stop_podsandbox',
      RemovePodSandbox: 'remove_podsandbox',
      PodSandboxStatus: 'podsandbox_status',
      ListPodSandbox: 'list_podsandbox',
      CreateContainer: 'create_container',
      StartContainer: 'start_container',
      StopContainer: 'stop_container',
      RemoveContainer: 'remove_container',
      ListContainers: 'list_containers',
      ContainerStatus: 'container_status',
      UpdateContainerResources: 'update_container',
      ReopenContainerLog: 'reopen_container_log',
      ExecSync: 'exec_sync',
      Exec: 'exec',
      Attach: 'attach',
      PortForward: 'port_forward',
      ContainerStats: 'container_stats',
      ListContainerStats: 'list_container_stats',
      PodSandboxStats: 'podsandbox_stats',
      ListPodSandboxStats: 'list_podsandbox_stats',
      UpdateRuntimeConfig: 'update_runtime_config',
      Status: 'status',
      Version: 'version',
      ListImages: 'list_images',
      ImageStatus: 'image_status',
      PullImage: 'pull_image',
      RemoveImage: 'remove_image',
      ImageFsInfo: 'image_fs_info',
    };
    for (const [method, type] of Object.entries(kubelet)) assert.equal(operationType(method), type, method);
    assert.deepEqual(podStartBuckets, [0.5, 1, 2, 3, 4, 5, 6, 8, 10, 20, 30, 45, 60, 120, 180, 240, 300, 360, 480, 600, 900, 1200, 1800, 2700, 3600]);
    assert.deepEqual(
      runtimeOperationBuckets.map(String),
      ['0.005', '0.0125', '0.03125', '0.078125', '0.1953125', '0.48828125', '1.220703125', '3.0517578125', '7.62939453125', '19.073486328125', '47.6837158203125', '119.20928955078125', '298.0232238769531', '745.0580596923828'],
    );
  });
});
