import assert from 'node:assert/strict';
import { describe, test } from 'node:test';

import { parseManifest } from '../../pkg/node/pod_manifest.js';
import { parseQuantity } from '../../pkg/node/quantity.js';

// The lifecycle half of a container spec: probes, hooks, resources, init
// containers and deletion metadata, parsed and defaulted as the API server
// does, and refused naming the field when wrong.

const pod = (spec: string, md = 'metadata: { name: web }'): string => `apiVersion: v1\nkind: Pod\n${md}\nspec:\n${spec}`;
const one = (text: string) => parseManifest(text, '/m/web.yaml')[0]!;
const fails = (text: string, field: RegExp, message?: RegExp): void => {
  assert.throws(() => parseManifest(text, '/m/web.yaml'), (e: Error & { field?: string }) => {
    assert.match(e.field ?? '', field);
    if (message) assert.match(e.message, message);
    return true;
  });
};
const c1 = (extra: string): string => pod(`  containers:\n    - name: app\n      image: busybox:1\n      ports: [{ name: http, containerPort: 8080 }]\n${extra}`);

describe('quantities', () => {
  test('cpu and memory in their usual spellings', () => {
    assert.equal(parseQuantity('100m', 'f'), 0.1);
    assert.equal(parseQuantity('1.5', 'f'), 1.5);
    assert.equal(parseQuantity(2, 'f'), 2);
    assert.equal(parseQuantity('128Mi', 'f'), 128 * 2 ** 20);
    assert.equal(parseQuantity('1G', 'f'), 1e9);
    assert.equal(parseQuantity('1e3', 'f'), 1000);
    assert.equal(parseQuantity('1.5Gi', 'f'), 1.5 * 2 ** 30);
    assert.equal(parseQuantity('500k', 'f'), 500000);
  });
  test('nonsense is refused naming the field', () => {
    for (const bad of ['12 apples', 'Mi', '1MiB', '', '-1', '1..2', null]) {
      assert.throws(() => parseQuantity(bad, 'spec.containers[0].resources.limits.memory'), (e: Error & { field?: string }) => e.field === 'spec.containers[0].resources.limits.memory', String(bad));
    }
  });
});

describe('probes', () => {
  test("kubelet's defaults; named ports resolved", () => {
    const c = one(c1('      livenessProbe: { httpGet: { port: http } }\n      readinessProbe: { exec: { command: [cat, /ready] }, periodSeconds: 2, successThreshold: 2 }\n      startupProbe: { tcpSocket: { port: 8080 }, failureThreshold: 30, terminationGracePeriodSeconds: 5 }\n')).containers[0]!;
    assert.deepEqual(c.livenessProbe, {
      handler: { kind: 'httpGet', path: '/', port: 8080, scheme: 'HTTP', httpHeaders: [] },
      initialDelaySeconds: 0,
      periodSeconds: 10,
      timeoutSeconds: 1,
      successThreshold: 1,
      failureThreshold: 3,
    });
    assert.deepEqual(c.readinessProbe?.handler, { kind: 'exec', command: ['cat', '/ready'] });
    assert.equal(c.readinessProbe?.periodSeconds, 2);
    assert.equal(c.readinessProbe?.successThreshold, 2);
    assert.deepEqual(c.startupProbe?.handler, { kind: 'tcpSocket', port: 8080 });
    assert.equal(c.startupProbe?.terminationGracePeriodSeconds, 5);
  });
  test('httpGet with host, scheme and headers; grpc with a service', () => {
    const c = one(c1('      livenessProbe: { httpGet: { path: /healthz, port: 8443, host: 10.0.0.1, scheme: HTTPS, httpHeaders: [{ name: X-Probe, value: "1" }] } }\n      readinessProbe: { grpc: { port: 9000, service: health } }\n')).containers[0]!;
    assert.deepEqual(c.livenessProbe?.handler, { kind: 'httpGet', path: '/healthz', port: 8443, host: '10.0.0.1', scheme: 'HTTPS', httpHeaders: [{ name: 'X-Probe', value: '1' }] });
    assert.deepEqual(c.readinessProbe?.handler, { kind: 'grpc', port: 9000, service: 'health' });
  });
  test('bad probes are refused naming the field', () => {
    fails(c1('      livenessProbe: { periodSeconds: 3 }\n'), /livenessProbe$/, /exactly one handler/);
    fails(c1('      livenessProbe: { exec: { command: ["true"] }, tcpSocket: { port: 1 } }\n'), /livenessProbe$/, /exec and tcpSocket/);
    fails(c1('      livenessProbe: { exec: { command: [] } }\n'), /livenessProbe\.exec\.command/);
    fails(c1('      livenessProbe: { exec: { command: ["true"] }, successThreshold: 2 }\n'), /livenessProbe\.successThreshold/);
    fails(c1('      readinessProbe: { exec: { command: ["true"] }, terminationGracePeriodSeconds: 3 }\n'), /readinessProbe\.terminationGracePeriodSeconds/);
    fails(c1('      readinessProbe: { httpGet: { port: metrics } }\n'), /readinessProbe\.httpGet\.port/, /names no port/);
    fails(c1('      readinessProbe: { grpc: { port: http } }\n'), /readinessProbe\.grpc\.port/);
    fails(c1('      readinessProbe: { exec: { command: ["true"] }, periodSeconds: -1 }\n'), /readinessProbe\.periodSeconds/);
    fails(c1('      readinessProbe: { httpGet: { port: 80, scheme: FTP } }\n'), /readinessProbe\.httpGet\.scheme/);
  });
});

describe('lifecycle hooks, termination message', () => {
  test('postStart and preStop: exec, httpGet, sleep', () => {
    const c = one(c1('      lifecycle:\n        postStart: { exec: { command: [touch, /started] } }\n        preStop: { sleep: { seconds: 5 } }\n      terminationMessagePolicy: FallbackToLogsOnError\n')).containers[0]!;
    assert.deepEqual(c.lifecycle, { postStart: { kind: 'exec', command: ['touch', '/started'] }, preStop: { kind: 'sleep', seconds: 5 } });
    assert.equal(c.terminationMessagePolicy, 'FallbackToLogsOnError');
    assert.equal(c.terminationMessagePath, '/dev/termination-log');
    fails(c1('      lifecycle: { preStop: { tcpSocket: { port: 80 } } }\n'), /lifecycle\.preStop$/);
    fails(c1('      lifecycle: { preStop: { sleep: { seconds: -1 } } }\n'), /lifecycle\.preStop\.sleep\.seconds/);
    fails(c1('      terminationMessagePolicy: Sometimes\n'), /terminationMessagePolicy/);
  });
});

describe('resources', () => {
  test('requests default to limits; request above limit refused', () => {
    const c = one(c1('      resources: { limits: { cpu: 500m, memory: 128Mi }, requests: { cpu: 250m } }\n')).containers[0]!;
    assert.deepEqual(c.resources, { limits: { cpu: 0.5, memory: 128 * 2 ** 20 }, requests: { cpu: 0.25, memory: 128 * 2 ** 20 } });
    fails(c1('      resources: { limits: { cpu: 1 }, requests: { cpu: 2 } }\n'), /resources\.requests\.cpu/);
    fails(c1('      resources: { limits: { memory: lots } }\n'), /resources\.limits\.memory/, /quantity/);
    fails(c1('      resources: { limits: { nvidia.com/gpu: 1 } }\n'), /resources\.limits\.nvidia\.com\/gpu/);
  });
});

describe('init containers and deletion', () => {
  test('init containers in order; a sidecar may have probes; names shared with the containers', () => {
    const p = one(pod('  initContainers:\n    - { name: setup, image: busybox:1, command: ["true"] }\n    - { name: proxy, image: busybox:1, restartPolicy: Always, readinessProbe: { exec: { command: ["true"] } } }\n  containers:\n    - { name: app, image: busybox:1 }\n'));
    assert.deepEqual(p.initContainers.map((c) => [c.name, c.restartPolicy]), [['setup', undefined], ['proxy', 'Always']]);
    fails(pod('  initContainers:\n    - { name: setup, image: b, livenessProbe: { exec: { command: ["true"] } } }\n  containers:\n    - { name: app, image: b }\n'), /spec\.initContainers\[0\]\.livenessProbe/);
    fails(pod('  initContainers:\n    - { name: app, image: b }\n  containers:\n    - { name: app, image: b }\n'), /spec\.containers\[0\]\.name/);
    fails(pod('  initContainers:\n    - { name: s, image: b, restartPolicy: Never }\n  containers:\n    - { name: app, image: b }\n'), /spec\.initContainers\[0\]\.restartPolicy/);
    fails(pod('  containers:\n    - { name: app, image: b, restartPolicy: Always }\n'), /spec\.containers\[0\]\.restartPolicy/);
  });
  test('deletionTimestamp and deletionGracePeriodSeconds are carried through', () => {
    const p = one(pod('  containers:\n    - { name: app, image: b }\n', 'metadata: { name: web, deletionTimestamp: "2026-12-01T10:00:00Z", deletionGracePeriodSeconds: 7 }'));
    assert.equal(p.deletionTimestamp, '2026-12-01T10:00:00Z');
    assert.equal(p.deletionGracePeriodSeconds, 7);
    fails(pod('  containers:\n    - { name: app, image: b }\n', 'metadata: { name: web, deletionGracePeriodSeconds: -1 }'), /metadata\.deletionGracePeriodSeconds/);
  });
});
