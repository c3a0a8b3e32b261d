import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { describe, test } from 'node:test';

import { parseManifest, podFromObject } from '../../pkg/node/pod_manifest.js';
import { fieldValue } from '../../pkg/node/pod_env.js';

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
    fails(pod('  hostAliases: [{ ip: 10.0.0.1, hostnames: [db] }]\n  containers:\n    - { name: c, image: b }\n'), /spec\.hostAliases/);
    fails(pod('  containers:\n    - { name: c, image: b, livenessProbe: {} }\n'), /spec\.containers\[0\]\.livenessProbe/);
    fails(pod('  restartPolicy: Sometimes\n  containers:\n    - { name: c, image: b }\n'), /spec\.restartPolicy/);
    fails(pod('  containers:\n    - { name: c, image: b }\n    - { name: c, image: b }\n'), /spec\.containers\[1\]\.name/);
    fails('apiVersion: apps/v1\nkind: Deployment\n', /kind/);
    fails('apiVersion: v1\nkind: Pod\nmetadata: { name: "Bad Name" }\nspec: {}\n', /metadata\.name/);
    fails('{ not yaml: [', /web\.yaml/);
  });
  test('env from pod fields (fieldRef), filled in when the pod runs; bad sources refused by field', () => {
    const [p] = parseManifest(
      pod("  containers:\n    - name: c\n      image: b\n      env:\n        - { name: IP, valueFrom: { fieldRef: { fieldPath: status.podIP } } }\n        - { name: APP, valueFrom: { fieldRef: { fieldPath: \"metadata.labels['app']\" } } }\n", 'metadata: { name: web, labels: { app: shop } }'),
      '/m/web.yaml',
    );
    assert.deepEqual(p!.containers[0]!.env.map((e) => (e.valueFrom?.kind === 'fieldRef' ? e.valueFrom.fieldPath : undefined)), ['status.podIP', "metadata.labels['app']"]);
    assert.equal(fieldValue(p!, "metadata.labels['app']", undefined), 'shop');
    assert.equal(fieldValue(p!, 'status.podIP', { podIP: '10.88.0.7', podIPs: ['10.88.0.7'], hostIP: '192.0.2.1', nodeName: 'box' }), '10.88.0.7');
    assert.equal(fieldValue(p!, 'metadata.name', undefined), 'web');
    fails(pod('  containers:\n    - name: c\n      image: b\n      env: [{ name: X, valueFrom: { secretKeyRef: { name: s } } }]\n'), /spec\.containers\[0\]\.env\[0\]\.valueFrom\.secretKeyRef\.key/);
    fails(pod('  containers:\n    - name: c\n      image: b\n      env: [{ name: X, valueFrom: { fieldRef: { fieldPath: metadata.name }, secretKeyRef: { name: s, key: k } } }]\n'), /spec\.containers\[0\]\.env\[0\]\.valueFrom$/);
    fails(pod('  containers:\n    - name: c\n      image: b\n      envFrom: [{ configMapRef: { name: a }, secretRef: { name: b } }]\n'), /spec\.containers\[0\]\.envFrom\[0\]$/);
    fails(pod('  containers:\n    - name: c\n      image: b\n      env: [{ name: X, valueFrom: { resourceFieldRef: { resource: limits.gpu } } }]\n'), /resourceFieldRef\.resource/);
    fails(pod('  containers:\n    - name: c\n      image: b\n      env: [{ name: X, valueFrom: { fieldRef: { fieldPath: status.phase } } }]\n'), /fieldRef\.fieldPath/);
  });

  test('a pod from the API server, every field defaulted, with the kube-api-access projected volume, parses', () => {
    const p = podFromObject(apiPod(), 'api', '');
    assert.equal(p.uid, '6f1ad0b8-4f5e-4d3c-9a8e-2b3c4d5e6f70', "an API pod keeps the API server's uid");
    assert.equal(p.serviceAccountName, 'default');
    const v = p.volumes[0]!;
    assert.equal(v.name, 'kube-api-access-x7k2p');
    assert.deepEqual(v.source, {
      kind: 'projected',
      defaultMode: 0o644,
      sources: [
        { kind: 'serviceAccountToken', audience: '', expirationSeconds: 3607, path: 'token' },
        { kind: 'configMap', name: 'kube-root-ca.crt', items: [{ key: 'ca.crt', path: 'ca.crt' }], optional: false },
        { kind: 'downwardAPI', items: [{ path: 'namespace', fieldRef: 'metadata.namespace' }] },
      ],
    });
    assert.deepEqual(p.containers[0]!.volumeMounts, [
      { name: 'kube-api-access-x7k2p', mountPath: '/var/run/secrets/kubernetes.io/serviceaccount', readOnly: true, subPath: '', mountPropagation: 'None', recursiveReadOnly: false },
    ]);
    assert.deepEqual(p.containers[0]!.resources, { limits: { memory: 64 * 2 ** 20 }, requests: { cpu: 0.25, memory: 64 * 2 ** 20 } });
  });

  test('pods exactly as kube-apiserver v1.37.2 defaults them parse: the divisor "0" is 1, hostPath type ""', () => {
    const fixtures = JSON.parse(readFileSync(new URL('../../../test/unit/fixtures/apiserver_pods.json', import.meta.url), 'utf8')) as Record<'run' | 'rich', { metadata: { uid: string } }>;
    const run = podFromObject(fixtures.run, 'api', '');
    assert.equal(run.uid, fixtures.run.metadata.uid);
    assert.deepEqual(run.volumes.map((v) => v.source.kind), ['projected']);
    const rich = podFromObject(fixtures.rich, 'api', '');
    assert.deepEqual(rich.volumes.map((v) => v.source.kind), ['emptyDir', 'emptyDir', 'configMap', 'secret', 'downwardAPI', 'hostPath', 'projected', 'projected']);
    assert.deepEqual(rich.containers[0]!.env[1]!.valueFrom, { kind: 'resourceFieldRef', containerName: '', resource: 'limits.memory', divisor: 1 });
    assert.deepEqual(rich.volumes[5]!.source, { kind: 'hostPath', path: '/tmp', type: '' });
  });

  test('a pod from a LIST (no apiVersion, no kind: kube-apiserver leaves them out of list items) parses; a static file must name both', () => {
    const { apiVersion: _v, kind: _k, ...item } = apiPod();
    assert.equal(podFromObject(item, 'api', '', { fromApi: true }).uid, '6f1ad0b8-4f5e-4d3c-9a8e-2b3c4d5e6f70');
    assert.equal(podFromObject({ ...item, apiVersion: 'v1', kind: 'Pod' }, 'api', '', { fromApi: true }).name, item.metadata.name);
    const refusedKind = (o: unknown, opts: { fromApi?: boolean }): void =>
      assert.throws(() => podFromObject(o, 'api', '', opts), (e: Error & { field?: string }) => (assert.equal(e.field, 'kind'), assert.match(e.message, /apiVersion v1, kind Pod/), true));
    refusedKind(item, {});
    refusedKind({ ...item, kind: 'Deployment' }, { fromApi: true });
    refusedKind({ ...item, apiVersion: 'apps/v1' }, { fromApi: true });
    fails('metadata: { name: web }\nspec:\n  containers: [{ name: c, image: busybox }]\n', /^\/m\/web\.yaml: kind$/);
  });

  test('fields that change what the node runs are still refused by name', () => {
    const refused = (edit: (o: ReturnType<typeof apiPod>) => void, field: RegExp): void => {
      const o = apiPod();
      edit(o);
      assert.throws(() => podFromObject(o, 'api', ''), (e: Error & { field?: string }) => (assert.match(e.field ?? '', field), true));
    };
    refused((o) => Object.assign(o.spec, { runtimeClassName: 'gvisor' }), /^spec\.runtimeClassName$/);
    refused((o) => Object.assign(o.spec.securityContext, { windowsOptions: {}, fsGroupChangePolicy: 'Always', seccompProfile: { type: 'Bogus' } }), /^spec\.securityContext\.seccompProfile\.type$/);
    refused((o) => Object.assign(o.spec.containers[0]!, { stdin: true }), /^spec\.containers\[0\]\.stdin$/);
    refused((o) => Object.assign(o.spec, { os: { name: 'windows' } }), /^spec\.os\.name$/);
    refused((o) => (o.spec.volumes[0]!.projected.sources[0] = { clusterTrustBundle: { name: 'x', path: 'b' } } as never), /sources\[0\]\.clusterTrustBundle$/);
  });

  test('volumes and mounts: every supported type; bad ones name the field', () => {
    const [p] = parseManifest(
      pod(`  volumes:
    - { name: scratch, emptyDir: {} }
    - { name: mem, emptyDir: { medium: Memory, sizeLimit: 64Mi } }
    - { name: conf, configMap: { name: app, items: [{ key: a, path: dir/a.conf, mode: 0400 }], defaultMode: 0640 } }
    - { name: creds, secret: { secretName: db, optional: true } }
    - { name: info, downwardAPI: { items: [{ path: labels, fieldRef: { fieldPath: metadata.labels } }, { path: mem, resourceFieldRef: { containerName: c, resource: limits.memory, divisor: 1Mi } }] } }
    - { name: host, hostPath: { path: /home/u/data, type: DirectoryOrCreate } }
  containers:
    - name: c
      image: b
      volumeMounts:
        - { name: scratch, mountPath: /scratch, subPath: sub }
        - { name: mem, mountPath: /mem, mountPropagation: HostToContainer }
        - { name: conf, mountPath: /conf, readOnly: true }
        - { name: host, mountPath: /host, subPathExpr: "$(POD)" }
`),
      '/m/web.yaml',
    );
    assert.deepEqual(p!.volumes.map((v) => v.source.kind), ['emptyDir', 'emptyDir', 'configMap', 'secret', 'downwardAPI', 'hostPath']);
    assert.deepEqual(p!.volumes[2]!.source, { kind: 'configMap', name: 'app', items: [{ key: 'a', path: 'dir/a.conf', mode: 0o400 }], defaultMode: 0o640, optional: false }, 'YAML 1.1 octal modes, as kubectl reads them');
    assert.deepEqual(p!.volumes[3]!.source, { kind: 'secret', name: 'db', defaultMode: 0o644, optional: true });
    assert.equal(p!.containers[0]!.volumeMounts[3]!.subPathExpr, '$(POD)');

    const spec = (volumes: string, mounts = ''): string => pod(`  volumes:\n${volumes}  containers:\n    - name: c\n      image: b\n${mounts}`);
    fails(spec('    - { name: a, emptyDir: {} }\n    - { name: b, emptyDir: {} }\n    - { name: c, iscsi: { targetPortal: x, iqn: y, lun: 0 } }\n'), /^\/m\/web\.yaml: spec\.volumes\[2\]$/);
    assert.throws(() => parseManifest(spec('    - { name: a, emptyDir: {} }\n    - { name: b, emptyDir: {} }\n    - { name: c, iscsi: {} }\n'), '/m/web.yaml'), /spec\.volumes\[2\] volume type iscsi is not supported by this node/);
    fails(spec('    - { name: a, emptyDir: {} }\n    - { name: a, emptyDir: {} }\n'), /spec\.volumes\[1\]\.name/);
    fails(spec('    - { name: a, emptyDir: {} }\n', '      volumeMounts: [{ name: b, mountPath: /b }]\n'), /spec\.containers\[0\]\.volumeMounts\[0\]\.name/);
    fails(spec('    - { name: a, emptyDir: {} }\n', '      volumeMounts: [{ name: a, mountPath: /b, subPath: ../up }]\n'), /volumeMounts\[0\]\.subPath/);
    fails(spec('    - { name: a, emptyDir: {} }\n', '      volumeMounts: [{ name: a, mountPath: b }]\n'), /volumeMounts\[0\]\.mountPath/);
    fails(spec('    - { name: a, emptyDir: {} }\n', '      volumeMounts: [{ name: a, mountPath: /b, mountPropagation: Bidirectional }]\n'), /volumeMounts\[0\]\.mountPropagation/);
    fails(spec('    - { name: a, emptyDir: { medium: HugePages } }\n'), /spec\.volumes\[0\]\.emptyDir\.medium/);
    fails(spec('    - { name: a, configMap: { name: x, defaultMode: 0999 } }\n'), /spec\.volumes\[0\]\.configMap\.defaultMode/);
    fails(spec('    - { name: a, configMap: { name: x, items: [{ key: k, path: /etc/x }] } }\n'), /spec\.volumes\[0\]\.configMap\.items\[0\]\.path/);
    fails(spec('    - { name: a, hostPath: { path: relative } }\n'), /spec\.volumes\[0\]\.hostPath\.path/);
    fails(spec('    - { name: a, hostPath: { path: /x, type: Whatever } }\n'), /spec\.volumes\[0\]\.hostPath\.type/);
    fails(spec('    - { name: a, emptyDir: {}, configMap: { name: x } }\n'), /spec\.volumes\[0\]$/);
    fails(spec('    - { name: a, downwardAPI: { items: [{ path: p, fieldRef: { fieldPath: status.podIP } }] } }\n'), /spec\.volumes\[0\]\.downwardAPI\.items\[0\]\.fieldRef\.fieldPath/);
    fails(spec('    - { name: a, projected: { sources: [{ serviceAccountToken: { path: t, expirationSeconds: 60 } }] } }\n'), /sources\[0\]\.serviceAccountToken\.expirationSeconds/);
  });
});

/** A pod as kube-apiserver v1.37.2 serves it after `kubectl run` (fixtures/apiserver_pods.json 'run', with resources and labels added), to edit. */
function apiPod() {
  return {
    apiVersion: 'v1',
    kind: 'Pod',
    metadata: {
      name: 'web',
      namespace: 'default',
      uid: '6f1ad0b8-4f5e-4d3c-9a8e-2b3c4d5e6f70',
      resourceVersion: '4711',
      creationTimestamp: '2026-12-01T16:00:00Z',
      labels: { run: 'web' },
      managedFields: [{ manager: 'kubectl-run', operation: 'Update', apiVersion: 'v1' }],
    },
    spec: {
      volumes: [
        {
          name: 'kube-api-access-x7k2p',
          projected: {
            sources: [
              { serviceAccountToken: { expirationSeconds: 3607, path: 'token' } } as Record<string, unknown>,
              { configMap: { name: 'kube-root-ca.crt', items: [{ key: 'ca.crt', path: 'ca.crt' }] } },
              { downwardAPI: { items: [{ path: 'namespace', fieldRef: { apiVersion: 'v1', fieldPath: 'metadata.namespace' } }] } },
            ],
            defaultMode: 420,
          },
        },
      ],
      containers: [
        {
          name: 'web',
          image: 'busybox:1.36',
          resources: { limits: { memory: '64Mi' }, requests: { cpu: '250m', memory: '64Mi' } },
          volumeMounts: [{ name: 'kube-api-access-x7k2p', readOnly: true, mountPath: '/var/run/secrets/kubernetes.io/serviceaccount' }],
          terminationMessagePath: '/dev/termination-log',
          terminationMessagePolicy: 'File',
          imagePullPolicy: 'IfNotPresent',
        } as Record<string, unknown>,
      ],
      restartPolicy: 'Always',
      terminationGracePeriodSeconds: 30,
      dnsPolicy: 'ClusterFirst',
      serviceAccountName: 'default',
      serviceAccount: 'default',
      automountServiceAccountToken: true,
      nodeName: 'box',
      securityContext: {} as Record<string, unknown>,
      schedulerName: 'default-scheduler',
      tolerations: [
        { key: 'node.kubernetes.io/not-ready', operator: 'Exists', effect: 'NoExecute', tolerationSeconds: 300 },
        { key: 'node.kubernetes.io/unreachable', operator: 'Exists', effect: 'NoExecute', tolerationSeconds: 300 },
      ],
      priority: 0,
      enableServiceLinks: true,
      preemptionPolicy: 'PreemptLowerPriority',
    } as Record<string, unknown> & { volumes: Array<{ name: string; projected: { sources: Array<Record<string, unknown>>; defaultMode: number } }>; containers: Array<Record<string, unknown>>; securityContext: Record<string, unknown> },
    status: { phase: 'Pending', qosClass: 'Burstable' },
  };
}
