import assert from 'node:assert/strict';
import { describe, test } from 'node:test';

import { parseManifest } from '../../pkg/node/pod_manifest.js';
import { fieldValue } from '../../pkg/node/pod_manager.js';

const pod = (spec: string, md = 'metadata: { name: web }'): string => `apiVersion: v1\nkind: Pod\n${md}\nspec:\n${spec}`;
const fails = (text: string, field: RegExp): void => {
  assert.throws(() => parseManifest(text, '/m/web.yaml'), (e: Error & { field?: string }) => {
    assert.match(e.field ?? '', field);
    assert.match(e.message, /\/m\/web\.yaml/);
    return true;
  });
};

describe('pod manifests', () => {
  test('a pod: containers, ports, env, defaults as the API server gives them', () => {
    const [p] = parseManifest(
      pod('  containers:\n    - name: httpd\n      image: busybox:1.36\n      command: [httpd, -f]\n      env: [{ name: A, value: "1" }]\n      ports: [{ containerPort: 80, hostPort: 8080 }]\n'),
      '/m/web.yaml',
    );
    assert.equal(p!.name, 'web');
    assert.equal(p!.namespace, 'default');
    assert.equal(p!.restartPolicy, 'Always');
    assert.deepEqual(p!.containers[0]!.ports, [{ containerPort: 80, hostPort: 8080, protocol: 'TCP' }]);
    assert.deepEqual(p!.containers[0]!.env, [{ name: 'A', value: '1' }]);
    assert.equal(p!.containers[0]!.imagePullPolicy, 'IfNotPresent');
    assert.match(p!.uid, /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/);
  });
  test('the uid is the same for the same text and place, new for a change', () => {
    const a = pod('  containers:\n    - { name: c, image: busybox }\n');
    assert.equal(parseManifest(a, '/m/a.yaml')[0]!.uid, parseManifest(a, '/m/a.yaml')[0]!.uid);
    assert.notEqual(parseManifest(a, '/m/a.yaml')[0]!.uid, parseManifest(a.replace('busybox', 'busybox:1'), '/m/a.yaml')[0]!.uid);
    assert.equal(parseManifest(a, '/m/a.yaml')[0]!.containers[0]!.imagePullPolicy, 'Always', ':latest pulls always');
  });
  test('several documents, several pods', () => {
    const two = `${pod('  containers:\n    - { name: c, image: busybox }\n')}\n---\n${pod('  containers:\n    - { name: c, image: busybox }\n', 'metadata: { name: other }')}`;
    assert.deepEqual(parseManifest(two, '/m/two.yaml').map((p) => p.name), ['web', 'other']);
  });
  test('bad or unsupported fields are refused by name', () => {
    fails(pod('  containers:\n    - name: x\n'), /spec\.containers\[0\]\.image/);
    fails(pod('  containers: []\n'), /spec\.containers$/);
    fails(pod('  containers:\n    - { name: c, image: b, ports: [{ containerPort: 70000 }] }\n'), /spec\.containers\[0\]\.ports\[0\]\.containerPort/);
    fails(pod('  volumes: [{ name: v, emptyDir: {} }]\n  containers:\n    - { name: c, image: b }\n'), /spec\.volumes/);
    fails(pod('  containers:\n    - { name: c, image: b, livenessProbe: {} }\n'), /spec\.containers\[0\]\.livenessProbe/);
    fails(pod('  restartPolicy: Sometimes\n  containers:\n    - { name: c, image: b }\n'), /spec\.restartPolicy/);
    fails(pod('  containers:\n    - { name: c, image: b }\n    - { name: c, image: b }\n'), /spec\.containers\[1\]\.name/);
    fails('apiVersion: apps/v1\nkind: Deployment\n', /kind/);
    fails('apiVersion: v1\nkind: Pod\nmetadata: { name: "Bad Name" }\nspec: {}\n', /metadata\.name/);
    fails('{ not yaml: [', /web\.yaml/);
  });
  test('env from pod fields (fieldRef), filled in when the pod runs; other sources refused', () => {
    const [p] = parseManifest(
      pod("  containers:\n    - name: c\n      image: b\n      env:\n        - { name: IP, valueFrom: { fieldRef: { fieldPath: status.podIP } } }\n        - { name: APP, valueFrom: { fieldRef: { fieldPath: \"metadata.labels['app']\" } } }\n", 'metadata: { name: web, labels: { app: shop } }'),
      '/m/web.yaml',
    );
    assert.deepEqual(p!.containers[0]!.env.map((e) => e.fieldPath), ['status.podIP', "metadata.labels['app']"]);
    assert.equal(fieldValue(p!, "metadata.labels['app']", undefined), 'shop');
    assert.equal(fieldValue(p!, 'status.podIP', { podIP: '10.88.0.7', hostIP: '192.0.2.1', nodeName: 'box' }), '10.88.0.7');
    assert.equal(fieldValue(p!, 'metadata.name', undefined), 'web');
    fails(pod('  containers:\n    - name: c\n      image: b\n      env: [{ name: X, valueFrom: { secretKeyRef: { name: s, key: k } } }]\n'), /spec\.containers\[0\]\.env\[0\]\.valueFrom/);
    fails(pod('  containers:\n    - name: c\n      image: b\n      env: [{ name: X, valueFrom: { fieldRef: { fieldPath: status.phase } } }]\n'), /fieldRef\.fieldPath/);
  });
});
