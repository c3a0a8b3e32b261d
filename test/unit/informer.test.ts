import assert from 'node:assert/strict';
import { describe, test } from 'node:test';

import type { KubernetesListObject, KubernetesObject } from '@kubernetes/client-node';

import { withItemTypes } from '../../pkg/node/informer.js';

// The items of a LIST response carry no apiVersion and kind (kube-apiserver
// v1.34.4 and v1.37.2 alike); the informer sets them from the list's own, so a
// pod listed after an agent restart looks like one from a watch event.

describe('informer list items', () => {
  test("items without apiVersion and kind get the list's (PodList v1 → Pod v1); items that have them keep them", () => {
    const l: KubernetesListObject<KubernetesObject> = {
      apiVersion: 'v1',
      kind: 'PodList',
      metadata: { resourceVersion: '7' },
      items: [{ metadata: { name: 'a' } }, { apiVersion: 'v1', kind: 'Pod', metadata: { name: 'b' } }],
    };
    const out = withItemTypes(l);
    assert.deepEqual(out.items.map((i) => [i.apiVersion, i.kind, i.metadata?.name]), [
      ['v1', 'Pod', 'a'],
      ['v1', 'Pod', 'b'],
    ]);
  });
  test('a list that does not say its own kind leaves the items as they are', () => {
    const l: KubernetesListObject<KubernetesObject> = { items: [{ metadata: { name: 'a' } }] } as KubernetesListObject<KubernetesObject>;
    assert.deepEqual(withItemTypes(l).items[0], { metadata: { name: 'a' } });
    assert.equal(withItemTypes({ apiVersion: 'v1', kind: 'Weird', items: [{}] } as KubernetesListObject<KubernetesObject>).items[0]!.kind, undefined);
  });
});
