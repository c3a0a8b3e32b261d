import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { mkdir, rm, writeFile } from 'node:fs/promises';
import { hostname } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';

import { type AgentProcess, eventually, freePort, requiredEnv, TestNode } from '../lib/agent.js';

// Static pods end to end: manifests in the node's folder become pods run by
// the node half through the runtime's CRI socket; changes, removals,
// crashes, a malformed file and an agent restart behave as with kubelet.

describe('usernode static pods', () => {
  let node: TestNode;
  let agent: AgentProcess;
  let dir: string;
  let busybox: string;
  let port: number;

  const manifest = (text: string, extra = ''): string => `apiVersion: v1
kind: Pod
metadata:
  name: web
  labels: { app: web }
spec:
  containers:
    - name: httpd
      image: ${busybox}
      command: ["sh", "-c", "mkdir -p /www && echo '${text}' > /www/index.html && exec httpd -f -p 8000 -h /www"]
      ports:
        - containerPort: 8000
          hostPort: ${port}
${extra}`;
  const page = async (): Promise<string | undefined> => {
    const r = await fetch(`http://127.0.0.1:${port}/`, { signal: AbortSignal.timeout(3000) }).catch(() => undefined);
    return r && r.status === 200 ? r.text() : undefined;
  };
  const containers = async (name: string): Promise<Array<{ id: string; state: string; metadata: { attempt: number } }>> =>
    (JSON.parse((await node.crictl(['ps', '-a', '--name', `^${name}$`, '-o', 'json'])).stdout) as { containers: Array<{ id: string; state: string; metadata: { attempt: number } }> }).containers;

  before(async () => {
    const bed = JSON.parse(readFileSync(requiredEnv('USERNODE_TEST_IMAGES'), 'utf8')) as { registry: string };
    busybox = `${bed.registry}/usernode/busybox:latest`;
    port = await freePort();
    node = await TestNode.create();
    await node.writeConfig(`registries:\n  "${bed.registry}": { plainHttp: true }\n`);
    dir = join(node.dir, 'config', 'usernode', 'manifests');
    await mkdir(dir, { recursive: true });
    await writeFile(join(dir, 'web.yaml'), manifest('version one'));
    agent = node.start();
    await agent.ready();
  });

  after(async () => {
    agent?.child.kill('SIGTERM');
    await node?.destroy();
  });

  it("runs a manifest's pod, reachable through its hostPort from the host", async () => {
    assert.equal(await eventually('the web page', page, 60000), 'version one\n');
    const pods = JSON.parse((await node.crictl(['pods', '--name', 'web', '-o', 'json'])).stdout) as { items: Array<{ labels: Record<string, string>; state: string }> };
    assert.equal(pods.items.filter((p) => p.state === 'SANDBOX_READY').length, 1);
    assert.equal(pods.items[0]!.labels['app'], 'web');
  });

  it('a malformed manifest is reported by file and field; the other pods run on', async () => {
    await writeFile(join(dir, 'broken.yaml'), 'apiVersion: v1\nkind: Pod\nmetadata: { name: broken }\nspec:\n  containers:\n    - name: x\n');
    await eventually('the refusal in the log', async () => (/static pod manifest refused.*broken\.yaml.*spec\.containers\[0\]\.image/.test(agent.log) ? true : undefined));
    assert.equal(await page(), 'version one\n');
    await rm(join(dir, 'broken.yaml'));
  });

  it('a changed manifest is a new pod: the new content is served', async () => {
    await writeFile(join(dir, 'web.yaml'), manifest('version two'));
    assert.equal(await eventually('the changed page', async () => ((await page()) === 'version two\n' ? 'version two\n' : undefined), 60000), 'version two\n');
    await eventually('one web pod left', async () => {
      const pods = JSON.parse((await node.crictl(['pods', '--name', 'web', '-o', 'json'])).stdout) as { items: unknown[] };
      return pods.items.length === 1 ? true : undefined;
    });
  });

  it('restarts a container that exits, by the restart policy (Always), with back-off', async () => {
    await writeFile(join(dir, 'crasher.yaml'), `apiVersion: v1\nkind: Pod\nmetadata: { name: crasher }\nspec:\n  containers:\n    - name: crash\n      image: ${busybox}\n      command: ["sh", "-c", "sleep 1; exit 3"]\n`);
    const restarted = await eventually('a restart', async () => ((await containers('crash')).some((c) => c.metadata.attempt >= 1) ? true : undefined), 60000);
    assert.ok(restarted);
    await writeFile(join(dir, 'once.yaml'), `apiVersion: v1\nkind: Pod\nmetadata: { name: once }\nspec:\n  restartPolicy: Never\n  containers:\n    - name: once\n      image: ${busybox}\n      command: ["sh", "-c", "exit 0"]\n`);
    await eventually('the one-shot to exit', async () => ((await containers('once')).some((c) => c.state === 'CONTAINER_EXITED') ? true : undefined), 30000);
    await new Promise((r) => setTimeout(r, 5000));
    assert.deepEqual((await containers('once')).map((c) => c.metadata.attempt), [0], 'a restartPolicy Never container was restarted');
    await rm(join(dir, 'crasher.yaml'));
    await rm(join(dir, 'once.yaml'));
  });

  it("fills env from the pod's fields (fieldRef): its name, its IP", async () => {
    await writeFile(
      join(dir, 'env.yaml'),
      `apiVersion: v1\nkind: Pod\nmetadata: { name: envpod, labels: { tier: back } }\nspec:\n  containers:\n    - name: env\n      image: ${busybox}\n      command: ["sh", "-c", "echo name=$NAME ip=$IP tier=$TIER; sleep 300"]\n      env:\n        - { name: NAME, valueFrom: { fieldRef: { fieldPath: metadata.name } } }\n        - { name: IP, valueFrom: { fieldRef: { fieldPath: status.podIP } } }\n        - { name: TIER, valueFrom: { fieldRef: { fieldPath: "metadata.labels['tier']" } } }\n`,
    );
    const line = await eventually('the env line', async () => {
      const c = (await containers('env'))[0];
      if (!c) return undefined;
      const out = (await node.crictl(['logs', c.id])).stdout;
      return /name=/.test(out) ? out.trim() : undefined;
    }, 60000);
    const pods = JSON.parse((await node.crictl(['pods', '--name', 'envpod', '-q'])).stdout === '' ? '{"items":[]}' : (await node.crictl(['pods', '--name', 'envpod', '-o', 'json'])).stdout) as { items: Array<{ id: string }> };
    const ip = (JSON.parse((await node.crictl(['inspectp', pods.items[0]!.id])).stdout) as { status: { network: { ip: string } } }).status.network.ip;
    // A static pod is named <name>-<node name>, as kubelet names it (the node name defaults to the host name).
    assert.equal(line, `name=envpod-${hostname().toLowerCase()} ip=${ip} tier=back`);
    await rm(join(dir, 'env.yaml'));
  });

  it('keeps running pods across an agent restart (not restarted)', async () => {
    const before = (await containers('httpd')).filter((c) => c.state === 'CONTAINER_RUNNING').map((c) => c.id);
    assert.equal(before.length, 1);
    agent.child.kill('SIGTERM');
    await agent.exited;
    agent = node.start();
    await agent.ready();
    await new Promise((r) => setTimeout(r, 5000));
    const after = (await containers('httpd')).filter((c) => c.state === 'CONTAINER_RUNNING').map((c) => c.id);
    assert.deepEqual(after, before);
    assert.equal(await page(), 'version two\n');
  });

  it('a removed manifest takes its pod away', async () => {
    await rm(join(dir, 'web.yaml'));
    await eventually('the pods to go', async () => {
      const pods = JSON.parse((await node.crictl(['pods', '-o', 'json'])).stdout) as { items: unknown[] };
      return pods.items.length === 0 ? true : undefined;
    }, 60000);
    assert.equal(await page(), undefined);
  });
});
