import assert from 'node:assert/strict';
import { describe, test } from 'node:test';

import type { NamespaceOption__Output } from '../../proto/types.js';
import { idCountOf, podUserNamespace } from '../../pkg/cri/pod_userns.js';
import { shiftedId } from '../../pkg/image/id_shift.js';

const node = { uids: 65537, gids: 65537 };
const map = (hostId: number, length = 10000, containerId = 0) => ({ hostId, containerId, length });
const opts = (userns: Partial<NonNullable<NamespaceOption__Output['usernsOptions']>> | null, rest: Partial<NamespaceOption__Output> = {}): NamespaceOption__Output =>
  ({ network: 'POD', pid: 'CONTAINER', ipc: 'POD', targetId: '', usernsOptions: userns ? { mode: 'POD', uids: [], gids: [], ...userns } : null, ...rest }) as NamespaceOption__Output;
const fieldOf = (f: () => unknown): string => {
  try {
    f();
  } catch (e: unknown) {
    return (e as { field?: string }).field ?? `no field: ${String(e)}`;
  }
  return 'no error';
};
const base = 'config.linux.security_context.namespace_options.userns_options';

describe('a pod user namespace from the CRI namespace options', () => {
  test('none or NODE: the node user namespace', () => {
    assert.equal(podUserNamespace(opts(null), node), undefined);
    assert.equal(podUserNamespace(undefined, node), undefined);
    assert.equal(podUserNamespace(opts({ mode: 'NODE' }), node), undefined);
  });
  test('POD: the one uid and gid mapping', () => {
    assert.deepEqual(podUserNamespace(opts({ uids: [map(1000)], gids: [map(2000)] }), node), { uids: [map(1000)], gids: [map(2000)] });
    // The last node id is usable.
    assert.ok(podUserNamespace(opts({ uids: [map(1, 65536)], gids: [map(1, 65536)] }), node));
  });
  test('bad options name the field', () => {
    assert.equal(fieldOf(() => podUserNamespace(opts({ mode: 'CONTAINER' }), node)), `${base}.mode`);
    assert.equal(fieldOf(() => podUserNamespace(opts({ mode: 'TARGET' }), node)), `${base}.mode`);
    assert.equal(fieldOf(() => podUserNamespace(opts({ mode: 'NODE', uids: [map(1000)] }), node)), base);
    assert.equal(fieldOf(() => podUserNamespace(opts({ uids: [map(1000), map(20000)], gids: [map(1000)] }), node)), `${base}.uids`);
    assert.equal(fieldOf(() => podUserNamespace(opts({ uids: [map(1000)], gids: [] }), node)), `${base}.gids`);
    assert.equal(fieldOf(() => podUserNamespace(opts({ uids: [map(1000, 100, 1)], gids: [map(1000)] }), node)), `${base}.uids[0].container_id`);
    assert.equal(fieldOf(() => podUserNamespace(opts({ uids: [map(1000, 0)], gids: [map(1000)] }), node)), `${base}.uids[0].length`);
    assert.equal(fieldOf(() => podUserNamespace(opts({ uids: [map(1000, 100000)], gids: [map(1000)] }), node)), `${base}.uids[0].host_id`);
    assert.equal(fieldOf(() => podUserNamespace(opts({ uids: [map(0)], gids: [map(1000)] }), node)), `${base}.uids[0].host_id`);
    assert.equal(fieldOf(() => podUserNamespace(opts({ uids: [map(1000)], gids: [map(1000)] }, { network: 'NODE' }), node)), 'config.linux.security_context.namespace_options.network');
  });
  test('the node id count from uid_map', () => {
    assert.equal(idCountOf('         0       1001          1\n         1     100000      65536\n'), 65537);
    assert.equal(idCountOf('0 0 4294967295\n'), 4294967295);
  });
  test('ids shift into the pod mapping; unmapped ids become the overflow id', () => {
    const r = [map(1000, 70000)];
    assert.equal(shiftedId(0, r), 1000);
    assert.equal(shiftedId(65534, r), 66534);
    assert.equal(shiftedId(80000, r), 66534);
    assert.equal(shiftedId(5, [map(1000, 3)]), undefined);
  });
});
