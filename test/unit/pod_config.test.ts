import assert from 'node:assert/strict';
import { describe, test } from 'node:test';

import { createLogger } from '../../pkg/log/logger.js';
import type { EventRecorder } from '../../pkg/node/event_recorder.js';
import type { KubeApi } from '../../pkg/node/kube_api.js';
import { mirrorAnnotation, PodConfig } from '../../pkg/node/pod_config.js';
import { parseManifest, type PodManifest } from '../../pkg/node/pod_manifest.js';
import type { PodStatusWriter } from '../../pkg/node/pod_status_writer.js';

// The merge of the static and API sources and what flows back: the worker
// gets one set (complete only once every source was seen), static pods carry
// kubelet's <name>-<node> names and get mirror pods, statuses go to the API
// object each pod has, a refused pod is told why.

const log = createLogger({ level: 'error', component: 'test' });
const tick = (): Promise<void> => new Promise((r) => setTimeout(r, 20));

function fixture(o: { cluster?: boolean } = { cluster: true }) {
  const desired: Array<{ pods: PodManifest[]; complete: boolean | undefined }> = [];
  const statuses: Array<{ ref: { name: string; uid: string }; status: unknown }> = [];
  const events: Array<{ name: string; type: string; reason: string; message: string }> = [];
  const apiCalls: Array<{ op: string; name: string; body?: unknown }> = [];
  const api = {
    core: {
      createNamespacedPod: async (r: { body: { metadata: { name: string } } }) => {
        apiCalls.push({ op: 'create', name: r.body.metadata.name, body: r.body });
        return r.body;
      },
      deleteNamespacedPod: async (r: { name: string; body: unknown }) => {
        apiCalls.push({ op: 'delete', name: r.name, body: r.body });
        return {};
      },
    },
  } as unknown as KubeApi;
  const cfg = new PodConfig({
    nodeName: 'n1',
    log,
    worker: { setDesired: (pods, complete) => desired.push({ pods: [...pods], complete }) },
    ...(o.cluster
      ? {
          cluster: {
            api,
            statuses: { set: (ref: { name: string; uid: string }, status: unknown) => statuses.push({ ref, status }), forget: () => undefined } as unknown as PodStatusWriter,
            events: { record: (ob: { name: string }, type: string, reason: string, message: string) => events.push({ name: ob.name, type, reason, message }) } as unknown as EventRecorder,
            nodeUid: () => 'node-uid',
          },
        }
      : {}),
  });
  return { cfg, desired, statuses, events, apiCalls };
}

const staticPod = (): PodManifest[] => parseManifest('apiVersion: v1\nkind: Pod\nmetadata: { name: web }\nspec:\n  containers: [{ name: c, image: busybox }]\n', '/m/web.yaml');
const apiPod = (name: string, uid: string, spec: Record<string, unknown> = { containers: [{ name: 'c', image: 'busybox' }] }, annotations: Record<string, string> = {}) => ({
  apiVersion: 'v1',
  kind: 'Pod',
  metadata: { name, namespace: 'default', uid, resourceVersion: '1', annotations },
  spec: { nodeName: 'n1', ...spec },
  status: { phase: 'Pending' },
});

describe('PodConfig', () => {
  test('the worker set is complete only when both sources were seen; static pods are <name>-<node>', () => {
    const { cfg, desired } = fixture();
    cfg.setStatic(staticPod());
    assert.equal(desired.at(-1)!.complete, false, 'the API server has not been listed yet');
    assert.deepEqual(desired.at(-1)!.pods.map((p) => p.name), ['web-n1']);
    assert.equal(desired.at(-1)!.pods[0]!.annotations['kubernetes.io/config.source'], 'file');
    cfg.setApi([apiPod('api-pod', 'u-1')]);
    assert.equal(desired.at(-1)!.complete, true);
    assert.deepEqual(desired.at(-1)!.pods.map((p) => p.name).sort(), ['api-pod', 'web-n1']);
    assert.equal(desired.at(-1)!.pods.find((p) => p.name === 'api-pod')!.uid, 'u-1', "an API pod keeps the API server's uid");
  });

  test('without an API server, the static source alone is complete', () => {
    const { cfg, desired } = fixture({ cluster: false });
    cfg.setStatic(staticPod());
    assert.equal(desired.at(-1)!.complete, true);
  });

  test('a static pod gets a mirror pod owned by the Node; a mirror pod is not run as a pod', async () => {
    const { cfg, desired, apiCalls } = fixture();
    const [sp] = staticPod();
    cfg.setStatic([sp!]);
    cfg.setApi([]);
    await tick();
    const created = apiCalls.find((c) => c.op === 'create')!;
    assert.equal(created.name, 'web-n1');
    const body = created.body as { metadata: { annotations: Record<string, string>; ownerReferences: Array<{ kind: string; uid: string; controller: boolean }> }; spec: { nodeName: string } };
    assert.equal(body.metadata.annotations[mirrorAnnotation], sp!.uid);
    assert.deepEqual(body.metadata.ownerReferences.map((r) => [r.kind, r.uid, r.controller]), [['Node', 'node-uid', true]]);
    assert.equal(body.spec.nodeName, 'n1');
    // The mirror shows up in the informer: it is not a second pod for the worker.
    cfg.setApi([apiPod('web-n1', 'mirror-uid', { containers: [{ name: 'c', image: 'busybox' }] }, { [mirrorAnnotation]: sp!.uid })]);
    assert.deepEqual(desired.at(-1)!.pods.map((p) => p.name), ['web-n1']);
    assert.equal(desired.at(-1)!.pods[0]!.uid, sp!.uid);
    // The static pod goes: its mirror is deleted (only if it is still that mirror: uid precondition).
    cfg.setStatic([]);
    await tick();
    const del = apiCalls.find((c) => c.op === 'delete')!;
    assert.equal(del.name, 'web-n1');
    assert.deepEqual((del.body as { preconditions: { uid: string } }).preconditions, { uid: 'mirror-uid' });
  });

  test("a static pod's status goes to its mirror pod once that exists", async () => {
    const { cfg, desired, statuses } = fixture();
    const [sp] = staticPod();
    cfg.setStatic([sp!]);
    cfg.setApi([]);
    const worker = desired.at(-1)!.pods[0]!;
    cfg.onStatus(worker, { phase: 'Running' });
    assert.equal(statuses.length, 0, 'no mirror pod yet');
    cfg.setApi([apiPod('web-n1', 'mirror-uid', {}, { [mirrorAnnotation]: sp!.uid })]);
    assert.deepEqual(statuses.map((s) => [s.ref.name, s.ref.uid]), [['web-n1', 'mirror-uid']]);
  });

  test('an API pod the node cannot run: Failed with the field named, and a Warning event, once', () => {
    const { cfg, desired, statuses, events } = fixture();
    cfg.setStatic([]);
    const bad = apiPod('bad', 'u-bad', { containers: [{ name: 'c', image: 'busybox' }], volumes: [{ name: 'v', iscsi: {} }] });
    cfg.setApi([bad, apiPod('good', 'u-good')]);
    cfg.setApi([bad, apiPod('good', 'u-good')]);
    assert.deepEqual(desired.at(-1)!.pods.map((p) => p.name), ['good'], 'the others run on');
    assert.equal(statuses.length, 1);
    const st = statuses[0]!.status as { phase: string; reason: string; message: string };
    assert.equal(st.phase, 'Failed');
    assert.match(st.message, /spec\.volumes/);
    assert.equal(events.length, 1);
    assert.equal(events[0]!.type, 'Warning');
  });

  test('API pods without apiVersion and kind (the items of a LIST, after an agent restart) are run, not refused', () => {
    const { cfg, desired, statuses, events } = fixture();
    cfg.setStatic([]);
    const { apiVersion: _v, kind: _k, ...listed } = apiPod('listed', 'u-listed');
    cfg.setApi([listed, apiPod('watched', 'u-watched')]);
    assert.deepEqual(desired.at(-1)!.pods.map((p) => p.name).sort(), ['listed', 'watched']);
    assert.deepEqual(statuses, [], 'no pod made Failed');
    assert.deepEqual(events, []);
  });

  test('a terminated API pod is deleted with grace 0 and its uid as precondition', async () => {
    const { cfg, desired, apiCalls } = fixture();
    cfg.setStatic([]);
    cfg.setApi([apiPod('gone', 'u-gone')]);
    await cfg.onTerminated(desired.at(-1)!.pods[0]!);
    const del = apiCalls.find((c) => c.op === 'delete')!;
    assert.equal(del.name, 'gone');
    assert.deepEqual(del.body, { gracePeriodSeconds: 0, preconditions: { uid: 'u-gone' } });
  });
});
