import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { mkdir, rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';

import { type AgentProcess, eventually, requiredEnv, TestNode } from '../lib/agent.js';

// A pod's life through the real agent, as a static pod: an init container
// runs to completion before the app starts, an exec liveness probe that starts failing
// gets the app killed and restarted with kubelet's events, an agent restart
// runs nothing again, and a removed manifest stops the pod gracefully.

interface Listed {
  id: string;
  state: string;
  metadata: { name: string; attempt: number };
}

describe('usernode pod lifecycle (init containers, probes, graceful stop)', () => {
  let node: TestNode;
  let agent: AgentProcess;
  let dir: string;
  let busybox: string;

  const containers = async (name: string): Promise<Listed[]> =>
    (JSON.parse((await node.crictl(['ps', '-a', '--name', `^${name}$`, '-o', 'json'])).stdout) as { containers: Listed[] }).containers.sort((a, b) => a.metadata.attempt - b.metadata.attempt);
  const logs = async (id: string): Promise<string> => (await node.crictl(['logs', id])).stdout;

  before(async () => {
    const bed = JSON.parse(readFileSync(requiredEnv('USERNODE_TEST_IMAGES'), 'utf8')) as { registry: string };
    busybox = `${bed.registry}/usernode/busybox:latest`;
    node = await TestNode.create();
    await node.writeConfig(`registries:\n  "${bed.registry}": { plainHttp: true }\n`);
    dir = join(node.dir, 'config', 'usernode', 'manifests');
    await mkdir(dir, { recursive: true });
    await writeFile(
      join(dir, 'life.yaml'),
      `apiVersion: v1
kind: Pod
metadata: { name: life }
spec:
  terminationGracePeriodSeconds: 5
  initContainers:
    - name: setup
      image: ${busybox}
      command: ["sh", "-c", "sleep 2; echo hello-from-init"]
  containers:
    - name: app
      image: ${busybox}
      command: ["sh", "-c", "touch /tmp/healthy; echo app started; exec sleep 3600"]
      livenessProbe:
        exec: { command: ["cat", "/tmp/healthy"] }
        periodSeconds: 1
        failureThreshold: 2
      resources: { limits: { cpu: 500m, memory: 64Mi } }
`,
    );
    agent = node.start();
    await agent.ready();
  });

  after(async () => {
    agent?.child.kill('SIGTERM');
    await node?.destroy();
  });

  it('runs the init container to completion first, then the app', async () => {
    const app = await eventually('the app to run', async () => (await containers('app')).find((c) => c.state === 'CONTAINER_RUNNING'), 90000);
    const setup = await containers('setup');
    assert.deepEqual(setup.map((c) => [c.metadata.attempt, c.state]), [[0, 'CONTAINER_EXITED']]);
    const inspected = JSON.parse((await node.crictl(['inspect', setup[0]!.id])).stdout) as { status: { exitCode: number; finishedAt: string } };
    const appStarted = JSON.parse((await node.crictl(['inspect', app.id])).stdout) as { status: { startedAt: string } };
    assert.equal(inspected.status.exitCode, 0);
    assert.ok(Date.parse(inspected.status.finishedAt) <= Date.parse(appStarted.status.startedAt), 'the app started before the init container finished');
    assert.equal((await logs(setup[0]!.id)).trim(), 'hello-from-init');
    assert.equal(await eventually('the app output', async () => (await logs(app.id)).trim() || undefined), 'app started');
  });

  it('a failing liveness probe kills and restarts the app, with Unhealthy and Killing events', async () => {
    const first = (await containers('app')).find((c) => c.state === 'CONTAINER_RUNNING')!;
    const rm = await node.crictl(['exec', first.id, 'rm', '/tmp/healthy']);
    assert.equal(rm.code, 0, rm.stderr);
    const again = await eventually('the restarted app', async () => (await containers('app')).find((c) => c.metadata.attempt === 1 && c.state === 'CONTAINER_RUNNING'), 60000);
    assert.match(agent.log, /reason=Unhealthy container=app message="Liveness probe failed: /);
    assert.match(agent.log, /reason=Killing container=app message="Container app failed liveness probe, will be restarted"/);
    assert.equal(await eventually('the app output', async () => (await logs(again.id)).trim() || undefined), 'app started');
    assert.equal((await containers('setup')).length, 1, 'the init container ran again');
  });

  it('an agent restart runs neither the init container nor the app again', async () => {
    const before = (await containers('app')).map((c) => c.id);
    agent.child.kill('SIGTERM');
    await agent.exited;
    agent = node.start();
    await agent.ready();
    await new Promise((r) => setTimeout(r, 5000));
    assert.deepEqual((await containers('app')).map((c) => c.id), before);
    assert.equal((await containers('setup')).length, 1);
  });

  it('a removed manifest stops the pod within its grace period', async () => {
    const t0 = Date.now();
    await rm(join(dir, 'life.yaml'));
    await eventually('the pod to go', async () => ((JSON.parse((await node.crictl(['pods', '-o', 'json'])).stdout) as { items: unknown[] }).items.length === 0 ? true : undefined), 60000);
    // sleep as PID 1 ignores SIGTERM: it is killed when the 5 s grace is up, not before, not much after.
    const took = Date.now() - t0;
    assert.ok(took >= 4000 && took < 30000, `stopped in ${took} ms`);
    assert.match(agent.log, /reason=Killing container=app message="Stopping container app"/);
  });
});
