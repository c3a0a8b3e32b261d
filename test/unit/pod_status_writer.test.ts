import assert from 'node:assert/strict';
import { describe, test } from 'node:test';

import { ApiException } from '@kubernetes/client-node';

import { createLogger } from '../../pkg/log/logger.js';
import type { KubeApi } from '../../pkg/node/kube_api.js';
import { PodStatusWriter } from '../../pkg/node/pod_status_writer.js';

// Pod statuses to a fake API server that can be away: the newest status of
// each pod is what gets written, once, with its uid; nothing is lost while
// the server is away; a pod gone from the server is dropped.

const log = createLogger({ level: 'error', component: 'test' });

function fakeApi() {
  const writes: Array<{ name: string; body: { metadata: { uid: string }; status: { phase: string } } }> = [];
  const state = { down: false, gone: new Set<string>() };
  const api = {
    core: {
      patchNamespacedPodStatus: async (r: { name: string; body: { metadata: { uid: string }; status: { phase: string } } }) => {
        if (state.down) throw new Error('connect ECONNREFUSED');
        if (state.gone.has(r.name)) throw new ApiException(404, 'gone', '{}', {});
        writes.push({ name: r.name, body: r.body });
        return {};
      },
    },
  } as unknown as KubeApi;
  return { api, writes, state };
}

describe('PodStatusWriter', () => {
  test('writes the newest status with the uid; an unchanged one is not written again', async () => {
    const { api, writes } = fakeApi();
    const w = new PodStatusWriter(api, log, () => 10);
    w.set({ namespace: 'd', name: 'a', uid: 'u-a' }, { phase: 'Pending' });
    w.set({ namespace: 'd', name: 'a', uid: 'u-a' }, { phase: 'Running' });
    await w.drain();
    w.set({ namespace: 'd', name: 'a', uid: 'u-a' }, { phase: 'Running' });
    await w.drain();
    assert.deepEqual(writes.map((x) => [x.name, x.body.metadata.uid, x.body.status.phase]), [['a', 'u-a', 'Running']]);
  });

  test('while the API server is away statuses wait; when it is back the newest of each is written', async () => {
    const { api, writes, state } = fakeApi();
    const w = new PodStatusWriter(api, log, () => 20);
    state.down = true;
    w.set({ namespace: 'd', name: 'a', uid: 'u-a' }, { phase: 'Pending' });
    w.set({ namespace: 'd', name: 'b', uid: 'u-b' }, { phase: 'Running' });
    await new Promise((r) => setTimeout(r, 100));
    w.set({ namespace: 'd', name: 'a', uid: 'u-a' }, { phase: 'Running' });
    assert.equal(writes.length, 0);
    state.down = false;
    await w.drain();
    assert.deepEqual(writes.map((x) => [x.name, x.body.status.phase]).sort(), [['a', 'Running'], ['b', 'Running']]);
  });

  test('a pod gone from the API server (404) is dropped, not retried', async () => {
    const { api, writes, state } = fakeApi();
    const w = new PodStatusWriter(api, log, () => 10);
    state.gone.add('a');
    w.set({ namespace: 'd', name: 'a', uid: 'u-a' }, { phase: 'Running' });
    w.set({ namespace: 'd', name: 'b', uid: 'u-b' }, { phase: 'Running' });
    await w.drain();
    assert.deepEqual(writes.map((x) => x.name), ['b']);
  });
});
