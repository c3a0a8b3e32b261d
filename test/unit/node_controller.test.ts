import assert from 'node:assert/strict';
import { describe, test } from 'node:test';

import { ApiException } from '@kubernetes/client-node';

import { createLogger } from '../../pkg/log/logger.js';
import type { KubeApi } from '../../pkg/node/kube_api.js';
import { NodeController } from '../../pkg/node/node_controller.js';
import type { HostFacts } from '../../pkg/node/node_object.js';

// The node's registration against a fake API server that records every call:
// create or reconcile, status patched (never replaced) and only when it
// changed, lease created then renewed with its resource version.

const log = createLogger({ level: 'error', component: 'test' });

const facts = (over: Partial<HostFacts> = {}): HostFacts => ({
  hostname: 'h', internalIPs: ['10.0.0.5'], cpus: 4, memoryBytes: 8 * 2 ** 30, ephemeralStorageBytes: 100 * 2 ** 30, ephemeralStorageFreeBytes: 50 * 2 ** 30,
  memoryAvailableBytes: 4 * 2 ** 30, pidMax: 4194304, pidsInUse: 300, kernelVersion: '6.1.0', osImage: 'Debian GNU/Linux 12 (bookworm)', arch: 'x64', os: 'linux',
  machineID: 'm', bootID: 'b', ...over,
});

const conflict = (code: number): ApiException<string> => new ApiException(code, 'HTTP', JSON.stringify({ message: `code ${code}` }), {});

function fakeApi(o: { nodeExists?: boolean } = {}) {
  const calls: Array<{ op: string; body?: unknown; contentType?: string }> = [];
  let leaseRv = 0;
  let lease: unknown;
  const api = {
    kc: {},
    server: 'https://fake',
    core: {
      createNode: async (r: { body: unknown }) => {
        calls.push({ op: 'createNode', body: r.body });
        if (o.nodeExists) throw conflict(409);
        return { metadata: { uid: 'node-uid' } };
      },
      patchNode: async (r: { body: unknown }) => {
        calls.push({ op: 'patchNode', body: r.body });
        return { metadata: { uid: 'node-uid' } };
      },
      patchNodeStatus: async (r: { body: unknown }) => {
        calls.push({ op: 'patchNodeStatus', body: r.body });
        return {};
      },
    },
    coordination: {
      readNamespacedLease: async () => {
        calls.push({ op: 'readLease' });
        if (!lease) throw conflict(404);
        return lease;
      },
      createNamespacedLease: async (r: { body: { metadata: Record<string, unknown> } }) => {
        calls.push({ op: 'createLease', body: r.body });
        lease = { ...r.body, metadata: { ...r.body.metadata, resourceVersion: String(++leaseRv) } };
        return lease;
      },
      replaceNamespacedLease: async (r: { body: { metadata: Record<string, unknown> } }) => {
        calls.push({ op: 'replaceLease', body: r.body });
        lease = { ...r.body, metadata: { ...r.body.metadata, resourceVersion: String(++leaseRv) } };
        return lease;
      },
    },
  };
  return { api: api as unknown as KubeApi, calls };
}

const nodeOptions = {
  name: 'n1', labels: { 'usernode.io/x': 'y' }, taints: [], reserved: { cpuMillis: 0, memoryBytes: 0 }, maxPods: 110,
  runtimeVersion: 'usernode://0.1.0', kubeletVersion: 'v1.37.2-usernode.0.1.0', kubeletPort: 10250,
};

async function runFor(c: NodeController, ms: number): Promise<void> {
  const stop = new AbortController();
  const done = c.run(stop.signal);
  await new Promise((r) => setTimeout(r, ms));
  stop.abort();
  await done;
}

describe('NodeController', () => {
  test('registers the Node, then patches its status and creates and renews its Lease', async () => {
    const { api, calls } = fakeApi();
    let ready = true;
    const c = new NodeController({ api, node: nodeOptions, facts: async () => facts(), runtimeReady: async () => ({ ready, message: ready ? '' : 'runc gone' }), log, statusUpdateMs: 20, leaseDurationSeconds: 0.2 });
    const stop = new AbortController();
    const done = c.run(stop.signal);
    await c.ready;
    assert.equal(c.uid, 'node-uid');
    await new Promise((r) => setTimeout(r, 200));
    const created = calls.find((x) => x.op === 'createNode')!.body as { metadata: { labels: Record<string, string> } };
    assert.equal(created.metadata.labels['usernode.io/x'], 'y');
    const statuses = calls.filter((x) => x.op === 'patchNodeStatus');
    assert.equal(statuses.length, 1, 'an unchanged status is not sent again before the report period');
    const leases = calls.filter((x) => x.op === 'createLease' || x.op === 'replaceLease');
    assert.equal(leases[0]!.op, 'createLease');
    assert.ok(leases.length >= 3, `lease renewed every quarter of its duration (${leases.length})`);
    const renewed = leases.at(-1)!.body as { metadata: { resourceVersion?: string; ownerReferences?: Array<{ kind: string; uid: string }> }; spec: { renewTime: string; holderIdentity: string } };
    assert.ok(renewed.metadata.resourceVersion, 'a renewal carries the resource version it read');
    assert.deepEqual(renewed.metadata.ownerReferences?.map((r) => [r.kind, r.uid]), [['Node', 'node-uid']]);
    assert.match(renewed.spec.renewTime, /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z$/, 'MicroTime has six fractional digits');
    // The runtime goes away: Ready flips and the status is sent at once, with a new transition time.
    ready = false;
    await new Promise((r) => setTimeout(r, 100));
    stop.abort();
    await done;
    const last = calls.filter((x) => x.op === 'patchNodeStatus').at(-1)!.body as { status: { conditions: Array<{ type: string; status: string; message: string; lastTransitionTime: string }> } };
    const readyCond = last.status.conditions.find((x) => x.type === 'Ready')!;
    assert.equal(readyCond.status, 'False');
    assert.match(readyCond.message, /runc gone/);
  });

  test('a Node registered before is reconciled by patch (labels and taints), not replaced', async () => {
    const { api, calls } = fakeApi({ nodeExists: true });
    const c = new NodeController({ api, node: nodeOptions, facts: async () => facts(), runtimeReady: async () => ({ ready: true, message: '' }), log, statusUpdateMs: 1000, leaseDurationSeconds: 40 });
    await runFor(c, 100);
    const patch = calls.find((x) => x.op === 'patchNode')!.body as { metadata: { labels: Record<string, string> }; status?: unknown };
    assert.equal(patch.metadata.labels['kubernetes.io/hostname'], 'n1');
    assert.equal(patch.status, undefined, 'status goes through the status subresource');
    assert.ok(calls.some((x) => x.op === 'patchNodeStatus'));
  });

  test('an API server that refuses registration is retried, and nothing else is sent before', async () => {
    const { api, calls } = fakeApi();
    let fail = 2;
    const create = api.core.createNode.bind(api.core);
    (api.core as unknown as { createNode: unknown }).createNode = async (r: never) => {
      if (fail-- > 0) throw new Error('connect ECONNREFUSED');
      return create(r);
    };
    const c = new NodeController({ api, node: nodeOptions, facts: async () => facts(), runtimeReady: async () => ({ ready: true, message: '' }), log, statusUpdateMs: 1000 });
    await runFor(c, 2000);
    assert.equal(c.uid, 'node-uid');
    assert.ok(calls.some((x) => x.op === 'createLease'));
  });
});
