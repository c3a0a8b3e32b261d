import assert from 'node:assert/strict';
import { readdir, readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { describe, test } from 'node:test';

import type { CriClients } from '../../proto/client.js';
import { createLogger } from '../../pkg/log/logger.js';
import { PodManager } from '../../pkg/node/pod_manager.js';
import { parseManifest } from '../../pkg/node/pod_manifest.js';
import type { ClusterObjects } from '../../pkg/node/pod_volumes.js';
import { tempFolders } from '../lib/unit.js';

// The pod worker's use of volumes and env, on a recording fake CRI: what
// CreateContainer is given, a pod whose volume or env cannot be made is not
// started (and the log says why), a removed pod's volumes go.

const temp = tempFolders('pod-manager-volumes-');

interface Call {
  method: string;
  req: Record<string, unknown>;
}

/** Just enough of a CRI runtime for the worker: sandboxes and containers that run until removed. */
function fakeCri(): { cri: CriClients; calls: Call[] } {
  const calls: Call[] = [];
  const sandboxes = new Map<string, { labels: Record<string, string>; attempt: number }>();
  const containers = new Map<string, { sandbox: string; name: string; attempt: number; labels: Record<string, string>; state: string }>();
  let seq = 0;
  type Handler = (req: Record<string, unknown>) => unknown;
  const handlers: Record<string, Handler> = {
    ListPodSandbox: () => ({ items: [...sandboxes].map(([id, s]) => ({ id, state: 'SANDBOX_READY', metadata: { attempt: s.attempt }, labels: s.labels })) }),
    RunPodSandbox: (r) => {
      const config = r.config as { labels: Record<string, string>; metadata: { attempt: number } };
      const id = `sb${++seq}`;
      sandboxes.set(id, { labels: config.labels, attempt: config.metadata.attempt });
      return { podSandboxId: id };
    },
    PodSandboxStatus: (r) => ({ status: { state: sandboxes.has(r.podSandboxId as string) ? 'SANDBOX_READY' : 'SANDBOX_NOTREADY', network: { ip: '10.88.0.5' } } }),
    StopPodSandbox: () => ({}),
    RemovePodSandbox: (r) => {
      sandboxes.delete(r.podSandboxId as string);
      return {};
    },
    ListContainers: (r) => ({
      containers: [...containers]
        .filter(([, c]) => c.sandbox === (r.filter as { podSandboxId: string }).podSandboxId)
        .map(([id, c]) => ({ id, state: c.state, metadata: { name: c.name, attempt: c.attempt }, labels: c.labels })),
    }),
    CreateContainer: (r) => {
      const config = r.config as { metadata: { name: string; attempt: number }; labels: Record<string, string> };
      const id = `c${++seq}`;
      containers.set(id, { sandbox: r.podSandboxId as string, name: config.metadata.name, attempt: config.metadata.attempt, labels: config.labels, state: 'CONTAINER_CREATED' });
      return { containerId: id };
    },
    StartContainer: (r) => {
      containers.get(r.containerId as string)!.state = 'CONTAINER_RUNNING';
      return {};
    },
    StopContainer: (r) => {
      const c = containers.get(r.containerId as string);
      if (c) c.state = 'CONTAINER_EXITED';
      return {};
    },
    RemoveContainer: (r) => {
      containers.delete(r.containerId as string);
      return {};
    },
    ContainerStatus: (r) => {
      const c = containers.get(r.containerId as string)!;
      const started = c.state === 'CONTAINER_CREATED' ? '0' : '1000000000';
      return { status: { id: r.containerId, state: c.state, createdAt: '1000000000', startedAt: started, finishedAt: c.state === 'CONTAINER_EXITED' ? '2000000000' : '0', exitCode: 0, image: { image: 'b' }, imageRef: 'sha256:1', labels: c.labels, reason: '', message: '' } };
    },
    ImageStatus: () => ({ image: { id: 'sha256:1' } }),
    PullImage: () => ({ imageRef: 'sha256:1' }),
  };
  const service = new Proxy(
    {},
    {
      get: (_t, method: string) => (req: Record<string, unknown>, cb: (err: Error | null, res?: unknown) => void) => {
        calls.push({ method, req });
        const h = handlers[method];
        if (!h) return cb(new Error(`fake CRI: ${method} is not faked`));
        cb(null, h(req));
      },
    },
  );
  return { cri: { runtime: service, image: service } as unknown as CriClients, calls };
}

const cluster: ClusterObjects = {
  configMap: async (_ns, name) => (name === 'app' ? { data: { level: 'debug', 'app.conf': 'x=1\n' }, binaryData: {} } : undefined),
  secret: async () => undefined,
  serviceAccountToken: async (_ns, sa, r) => ({ token: `tok-${sa}-${r.podName}`, expiresAt: new Date(Date.now() + 3600_000) }),
};

async function until(what: string | (() => string), f: () => boolean | Promise<boolean>): Promise<void> {
  for (let i = 0; i < 200; i++) {
    if (await f()) return;
    await new Promise((r) => setTimeout(r, 20));
  }
  assert.fail(`timed out waiting for ${typeof what === 'string' ? what : what()}`);
}

describe('the pod worker with volumes and env', () => {
  test('CreateContainer gets the env (valueFrom, expanded), the expanded command and the mounts; removal takes the volumes away', async () => {
    const { cri, calls } = fakeCri();
    const root = await temp.fresh('disk');
    const memoryRoot = await temp.fresh('mem');
    const logged: string[] = [];
    const pods = new PodManager({ cri, log: createLogger({ level: 'info', component: 'test', write: (l) => void logged.push(l) }), logRoot: await temp.fresh('logs'), volumeRoot: root, memoryVolumeRoot: memoryRoot, cluster, nodeName: 'box', hostIP: '192.0.2.1' });
    const [pod] = parseManifest(
      `apiVersion: v1
kind: Pod
metadata: { name: web, namespace: shop, uid: u-1 }
spec:
  serviceAccountName: builder
  volumes:
    - { name: conf, configMap: { name: app } }
    - name: sa
      projected: { sources: [{ serviceAccountToken: { path: token } }] }
  containers:
    - name: c
      image: b
      command: [sh, -c, "echo $(GREETING)"]
      env:
        - { name: LEVEL, valueFrom: { configMapKeyRef: { name: app, key: level } } }
        - { name: GREETING, value: "level $(LEVEL) on $(NODE)" }
        - { name: NODE, valueFrom: { fieldRef: { fieldPath: spec.nodeName } } }
      volumeMounts:
        - { name: conf, mountPath: /etc/app }
        - { name: sa, mountPath: /var/run/secrets/kubernetes.io/serviceaccount }
`,
      '/m/web.yaml',
    );
    pods.setDesired([pod!]);
    pods.start();
    await until(() => `the container (logged: ${logged.join('')})`, () => calls.some((c) => c.method === 'CreateContainer'));
    const config = calls.find((c) => c.method === 'CreateContainer')!.req.config as { command: string[]; envs: Array<{ key: string; value: Buffer }>; mounts: Array<{ containerPath: string; hostPath: string; readonly: boolean }> };
    assert.deepEqual(config.envs.map((e) => [e.key, e.value.toString()]), [
      ['LEVEL', 'debug'],
      ['GREETING', 'level debug on $(NODE)'],
      ['NODE', 'box'],
    ]);
    assert.deepEqual(config.command, ['sh', '-c', 'echo level debug on $(NODE)']);
    assert.deepEqual(config.mounts.map((m) => [m.containerPath, m.readonly]), [
      ['/etc/app', true],
      ['/var/run/secrets/kubernetes.io/serviceaccount', true],
    ]);
    assert.equal(await readFile(join(config.mounts[0]!.hostPath, 'app.conf'), 'utf8'), 'x=1\n');
    assert.equal(await readFile(join(config.mounts[1]!.hostPath, 'token'), 'utf8'), 'tok-builder-web');
    const firstRun = calls.findIndex((c) => c.method === 'RunPodSandbox');
    assert.ok(firstRun >= 0);

    pods.setDesired([]);
    await until(() => `the volumes to go (logged: ${logged.join('')})`, async () => (await readdir(root)).length === 0 && (await readdir(memoryRoot)).length === 0);
    await pods.stop();
    assert.ok(logged.some((l) => l.includes('pod volumes removed')));
  });

  test('a missing configMap in a volume keeps the sandbox from being made; one in env keeps the container from being made; the log says why', async () => {
    const { cri, calls } = fakeCri();
    const logged: string[] = [];
    const pods = new PodManager({
      cri,
      log: createLogger({ level: 'info', component: 'test', write: (l) => void logged.push(l) }),
      logRoot: await temp.fresh('logs'),
      volumeRoot: await temp.fresh('disk'),
      memoryVolumeRoot: await temp.fresh('mem'),
      cluster,
      // A container that cannot be made is an event (and a waiting reason), as kubelet reports it.
      onEvent: (p, e) => void logged.push(`${p.name} ${e.reason} ${e.message}`),
    });
    const manifest = (name: string, extra: string) => parseManifest(`apiVersion: v1\nkind: Pod\nmetadata: { name: ${name} }\nspec:\n${extra}`, `/m/${name}.yaml`)[0]!;
    pods.start();
    pods.setDesired([
      manifest('novol', '  volumes: [{ name: v, configMap: { name: gone } }]\n  containers:\n    - { name: c, image: b, volumeMounts: [{ name: v, mountPath: /v }] }\n'),
      manifest('noenv', '  containers:\n    - { name: c, image: b, env: [{ name: X, valueFrom: { configMapKeyRef: { name: app, key: nope } } }] }\n'),
    ]);
    await until('both refusals', () => logged.some((l) => l.includes('novol') && l.includes('cannot')) && logged.some((l) => l.includes('noenv') && l.includes('cannot')));
    await pods.stop();
    const novol = logged.find((l) => l.includes('novol') && l.includes('cannot'))!;
    assert.match(novol, /volumes cannot be set up: spec\.volumes\[0\] \(volume v\): configmap \\?"gone\\?" not found/);
    const noenv = logged.find((l) => l.includes('noenv') && l.includes('cannot'))!;
    assert.match(noenv, /container c cannot be made: spec\.containers\[0\]\.env\[0\]\.valueFrom\.configMapKeyRef\.key: key nope not found in configmap \\?"app\\?"/);
    const sandboxes = calls.filter((c) => c.method === 'RunPodSandbox').map((c) => (c.req.config as { metadata: { name: string } }).metadata.name);
    assert.deepEqual(sandboxes, ['noenv'], 'no sandbox for the pod whose volume failed');
    assert.equal(calls.filter((c) => c.method === 'CreateContainer').length, 0);
  });
});
