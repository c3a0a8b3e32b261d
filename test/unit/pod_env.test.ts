import assert from 'node:assert/strict';
import { describe, test } from 'node:test';

import { containerEnv, expand, expandCommand, type EnvFacts } from '../../pkg/node/pod_env.js';
import { parseManifest } from '../../pkg/node/pod_manifest.js';
import type { ClusterObjects } from '../../pkg/node/pod_volumes.js';
import { rejection } from '../lib/unit.js';

// A container's env as kubelet makes it, against a fake API server.

const facts: EnvFacts = { podIP: '10.88.0.9', podIPs: ['10.88.0.9'], hostIP: '192.0.2.1', nodeName: 'box', allocatable: { cpu: '2', memory: '4Gi', 'ephemeral-storage': '100Gi' } };

function fakeCluster(configMaps: Record<string, Record<string, string>>, secrets: Record<string, Record<string, string>> = {}): ClusterObjects & { reads: string[] } {
  const reads: string[] = [];
  return {
    reads,
    configMap: async (ns, name) => (reads.push(`cm ${ns}/${name}`), configMaps[name] ? { data: configMaps[name], binaryData: {} } : undefined),
    secret: async (ns, name) => (reads.push(`secret ${ns}/${name}`), secrets[name] ? { data: Object.fromEntries(Object.entries(secrets[name]).map(([k, v]) => [k, Buffer.from(v)])) } : undefined),
    serviceAccountToken: async () => assert.fail('no token here'),
  };
}

const podWith = (container: string, extra = '') =>
  parseManifest(`apiVersion: v1\nkind: Pod\nmetadata: { name: web, namespace: shop, labels: { app: web } }\nspec:\n${extra}  containers:\n    - name: c\n      image: b\n${container}`, '/m/p.yaml')[0]!;

describe('container env', () => {
  test('envFrom first (prefix, later sources override), then env in order with $(VAR) expansion of earlier ones', async () => {
    const pod = podWith(`      envFrom:
        - configMapRef: { name: base }
        - { prefix: DB_, secretRef: { name: db } }
      env:
        - { name: URL, value: "postgres://$(DB_USER)@$(HOST):$(PORT)/$(LATER)" }
        - { name: HOST, value: "$(MODE)-db" }
        - { name: PRICE, value: "$$(MODE) costs $$5, $(MODE" }
        - { name: LATER, value: x }
        - { name: MODE, value: override }
`);
    const env = await containerEnv(pod, pod.containers[0]!, facts, fakeCluster({ base: { MODE: 'prod', PORT: '5432' } }, { db: { USER: 'app' } }));
    assert.deepEqual(env, [
      { key: 'MODE', value: 'override' },
      { key: 'PORT', value: '5432' },
      { key: 'DB_USER', value: 'app' },
      // HOST is defined after URL: its reference stays as written, as with kubelet.
      { key: 'URL', value: 'postgres://app@$(HOST):5432/$(LATER)' },
      { key: 'HOST', value: 'prod-db' },
      { key: 'PRICE', value: '$(MODE) costs $5, $(MODE' },
      { key: 'LATER', value: 'x' },
    ]);
  });

  test('fieldRef, resourceFieldRef (with divisor; an unset limit is the node allocatable), configMap and secret keys', async () => {
    const pod = podWith(`      resources: { requests: { cpu: 250m, memory: 64Mi } }
      env:
        - { name: IP, valueFrom: { fieldRef: { fieldPath: status.podIP } } }
        - { name: NS, valueFrom: { fieldRef: { fieldPath: metadata.namespace } } }
        - { name: APP, valueFrom: { fieldRef: { fieldPath: "metadata.labels['app']" } } }
        - { name: SA, valueFrom: { fieldRef: { fieldPath: spec.serviceAccountName } } }
        - { name: CPU_REQ, valueFrom: { resourceFieldRef: { resource: requests.cpu } } }
        - { name: CPU_REQ_M, valueFrom: { resourceFieldRef: { resource: requests.cpu, divisor: 1m } } }
        - { name: MEM_REQ_MI, valueFrom: { resourceFieldRef: { containerName: c, resource: requests.memory, divisor: 1Mi } } }
        - { name: MEM_LIMIT, valueFrom: { resourceFieldRef: { resource: limits.memory, divisor: 1Gi } } }
        - { name: LEVEL, valueFrom: { configMapKeyRef: { name: cfg, key: level } } }
        - { name: PASS, valueFrom: { secretKeyRef: { name: db, key: password } } }
        - { name: NOPE, valueFrom: { secretKeyRef: { name: db, key: missing, optional: true } } }
        - { name: NONE, valueFrom: { configMapKeyRef: { name: gone, key: k, optional: true } } }
`, '  serviceAccountName: builder\n');
    const env = await containerEnv(pod, pod.containers[0]!, facts, fakeCluster({ cfg: { level: 'debug' } }, { db: { password: 's3cret' } }));
    assert.deepEqual(Object.fromEntries(env.map((e) => [e.key, e.value])), {
      IP: '10.88.0.9',
      NS: 'shop',
      APP: 'web',
      SA: 'builder',
      CPU_REQ: '1',
      CPU_REQ_M: '250',
      MEM_REQ_MI: '64',
      MEM_LIMIT: '4',
      LEVEL: 'debug',
      PASS: 's3cret',
    });
  });

  test('a missing object or key names it; optional ones are left out; invalid envFrom keys are skipped with a reason', async () => {
    const missingKey = podWith('      env: [{ name: X, valueFrom: { configMapKeyRef: { name: cfg, key: nope } } }]\n');
    const e1 = (await rejection(containerEnv(missingKey, missingKey.containers[0]!, facts, fakeCluster({ cfg: { level: 'x' } })))) as Error & { field: string };
    assert.match(e1.message, /key nope not found in configmap "cfg"/);
    assert.equal(e1.field, 'spec.containers[0].env[0].valueFrom.configMapKeyRef.key');
    const missingObject = podWith('      envFrom: [{ secretRef: { name: db } }]\n');
    const e2 = (await rejection(containerEnv(missingObject, missingObject.containers[0]!, facts, fakeCluster({})))) as Error & { field: string };
    assert.match(e2.message, /secret "db" not found/);
    assert.equal(e2.field, 'spec.containers[0].envFrom[0].secretRef');
    const noControlPlane = await rejection(containerEnv(missingObject, missingObject.containers[0]!, facts, undefined));
    assert.match((noControlPlane as Error).message, /no control plane/);

    const optional = podWith('      envFrom: [{ configMapRef: { name: gone, optional: true } }, { configMapRef: { name: odd } }]\n');
    const warnings: string[] = [];
    const env = await containerEnv(optional, optional.containers[0]!, { ...facts, warn: (m) => warnings.push(m) }, fakeCluster({ odd: { GOOD: '1', 'BAD=KEY': '2' } }));
    assert.deepEqual(env, [{ key: 'GOOD', value: '1' }]);
    assert.match(warnings[0]!, /BAD=KEY.*configmap "odd".*skipped/);
  });

  test('$(VAR) in command and args, as kubelet expands them', () => {
    assert.deepEqual(expandCommand(['sh', '-c', 'echo $(MSG) $$(MSG) $(UNSET) $HOME'], [{ key: 'MSG', value: 'hi' }]), ['sh', '-c', 'echo hi $(MSG) $(UNSET) $HOME']);
    assert.equal(expand('a$', () => undefined), 'a$');
    assert.equal(expand('$(A)$(B)', (n) => ({ A: '1', B: '2' })[n]), '12');
  });
});

describe('service env vars', () => {
  const services = [
    { namespace: 'default', name: 'kubernetes', clusterIP: '10.96.0.1', ports: [{ name: 'https', port: 443, protocol: 'TCP' }] },
    { namespace: 'shop', name: 'web-svc', clusterIP: '10.96.0.7', ports: [{ name: 'http', port: 8080, protocol: 'TCP' }, { name: 'dns', port: 53, protocol: 'UDP' }] },
    { namespace: 'shop', name: 'headless', clusterIP: 'None', ports: [{ name: '', port: 80, protocol: 'TCP' }] },
  ];
  test("the master service always, the namespace's with enableServiceLinks, headless ones never", async () => {
    const { serviceEnv } = await import('../../pkg/node/pod_env.js');
    const on = serviceEnv(services, 'shop', true);
    assert.equal(on.get('KUBERNETES_SERVICE_HOST'), '10.96.0.1');
    assert.equal(on.get('KUBERNETES_PORT'), 'tcp://10.96.0.1:443');
    assert.equal(on.get('WEB_SVC_SERVICE_PORT'), '8080');
    assert.equal(on.get('WEB_SVC_SERVICE_PORT_DNS'), '53');
    assert.equal(on.get('WEB_SVC_PORT_53_UDP_PROTO'), 'udp');
    assert.equal(on.get('WEB_SVC_PORT_8080_TCP_ADDR'), '10.96.0.7');
    assert.ok(![...on.keys()].some((k) => k.startsWith('HEADLESS')));
    const off = serviceEnv(services, 'shop', false);
    assert.deepEqual([...off.keys()].filter((k) => !k.startsWith('KUBERNETES_')), []);
  });
});
