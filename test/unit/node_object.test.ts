import assert from 'node:assert/strict';
import { tmpdir } from 'node:os';
import { describe, test } from 'node:test';

import { gatherHostFacts } from '../../pkg/node/host_facts.js';
import { buildNode, goArch, type HostFacts, nodeConditions, type NodeOptions } from '../../pkg/node/node_object.js';

const host: HostFacts = {
  hostname: 'box',
  internalIPs: ['192.0.2.10'],
  cpus: 2,
  memoryBytes: 8 * 1024 ** 3,
  memoryAvailableBytes: 4 * 1024 ** 3,
  ephemeralStorageBytes: 100 * 1024 ** 3,
  ephemeralStorageFreeBytes: 50 * 1024 ** 3,
  pidMax: 4194304,
  pidsInUse: 300,
  kernelVersion: '6.18.0',
  osImage: 'Debian GNU/Linux 12 (bookworm)',
  arch: 'x64',
  os: 'linux',
  machineID: 'abc',
  bootID: 'def',
};
const opts: NodeOptions = {
  name: 'box',
  labels: { 'node-role.kubernetes.io/usernode': '' },
  taints: [],
  reserved: { cpuMillis: 100, memoryBytes: 256 * 1024 ** 2 },
  maxPods: 110,
  runtimeVersion: 'usernode://0.1.0',
  kubeletVersion: 'v1.37.2',
  kubeletPort: 10250,
  runtimeReady: { ready: true, message: '' },
};

describe('the Node object', () => {
  test('labels, capacity and allocatable (less the reservation), nodeInfo, addresses', () => {
    const n = buildNode(host, opts) as { metadata: { labels: Record<string, string> }; status: Record<string, unknown> };
    assert.equal(n.metadata.labels['kubernetes.io/hostname'], 'box');
    assert.equal(n.metadata.labels['kubernetes.io/arch'], 'amd64');
    assert.equal(n.metadata.labels['node-role.kubernetes.io/usernode'], '');
    assert.deepEqual(n.status.capacity, { cpu: '2', memory: '8388608Ki', 'ephemeral-storage': '104857600Ki', pods: '110' });
    assert.deepEqual(n.status.allocatable, { cpu: '1900m', memory: '8126464Ki', 'ephemeral-storage': '104857600Ki', pods: '110' });
    assert.deepEqual(n.status.addresses, [{ type: 'InternalIP', address: '192.0.2.10' }, { type: 'Hostname', address: 'box' }]);
    assert.equal((n.status.nodeInfo as Record<string, string>).containerRuntimeVersion, 'usernode://0.1.0');
    assert.equal((n.status.nodeInfo as Record<string, string>).architecture, 'amd64');
    assert.deepEqual((n.status.daemonEndpoints as { kubeletEndpoint: { Port: number } }).kubeletEndpoint, { Port: 10250 });
  });
  test('conditions tell the truth, with the reasons kubelet uses', () => {
    const ok = nodeConditions(host, opts);
    assert.deepEqual(ok.map((c) => [c.type, c.status, c.reason]), [
      ['MemoryPressure', 'False', 'KubeletHasSufficientMemory'],
      ['DiskPressure', 'False', 'KubeletHasNoDiskPressure'],
      ['PIDPressure', 'False', 'KubeletHasSufficientPID'],
      ['Ready', 'True', 'KubeletReady'],
    ]);
    const bad = nodeConditions({ ...host, memoryAvailableBytes: 50 * 1024 ** 2, ephemeralStorageFreeBytes: 1024 ** 3, pidsInUse: 4000000 }, { runtimeReady: { ready: false, message: 'NetworkPluginNotReady' } });
    assert.deepEqual(bad.map((c) => [c.type, c.status]), [['MemoryPressure', 'True'], ['DiskPressure', 'True'], ['PIDPressure', 'True'], ['Ready', 'False']]);
    assert.match(bad[3]!.message, /NetworkPluginNotReady/);
  });
  test('taints go in the spec', () => {
    const n = buildNode(host, { ...opts, taints: [{ key: 'usernode.io/rootless', effect: 'NoSchedule' }] }) as { spec: { taints?: unknown[] } };
    assert.deepEqual(n.spec.taints, [{ key: 'usernode.io/rootless', effect: 'NoSchedule' }]);
    assert.equal(goArch('arm64'), 'arm64');
  });
  test("this host's facts are read without root", async () => {
    const h = await gatherHostFacts(tmpdir());
    assert.ok(h.cpus >= 1);
    assert.ok(h.memoryBytes > h.memoryAvailableBytes && h.memoryAvailableBytes > 0);
    assert.ok(h.ephemeralStorageBytes >= h.ephemeralStorageFreeBytes && h.ephemeralStorageFreeBytes > 0);
    assert.ok(h.pidMax > h.pidsInUse && h.pidsInUse > 0);
    assert.match(h.bootID, /^[0-9a-f-]{36}$/);
    assert.equal(h.os, 'linux');
  });
});
