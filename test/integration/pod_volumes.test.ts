import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { mkdir, readdir, readFile, rm, stat, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';

import { memoryVolumeRoot } from '../../pkg/node/pod_volumes.js';
import { type AgentProcess, eventually, requiredEnv, TestNode } from '../lib/agent.js';

// Pod volumes and env end to end, with static pods run by the agent: an
// emptyDir two containers share, a Memory emptyDir on a tmpfs, a downwardAPI
// file of the pod's labels, a hostPath the user owns (read and written by the
// pod), $(VAR) expansion; a hostPath the user does not own keeps its pod from
// starting and the log says why; a removed pod's volumes go, even files a
// container made as another user; subPath and subPathExpr mounts, and a
// subPath a container turned into a symlink out of the volume refused.

describe('usernode pod volumes', () => {
  let node: TestNode;
  let agent: AgentProcess;
  let dir: string;
  let busybox: string;
  let hostData: string;

  const containers = async (name: string): Promise<Array<{ id: string; state: string; podSandboxId: string }>> =>
    (JSON.parse((await node.crictl(['ps', '-a', '--name', `^${name}$`, '-o', 'json'])).stdout) as { containers: Array<{ id: string; state: string; podSandboxId: string }> }).containers;
  const logsOf = async (name: string, want: RegExp): Promise<string> =>
    eventually(`the log of ${name} to match ${want}`, async () => {
      const c = (await containers(name))[0];
      if (!c) return undefined;
      const out = (await node.crictl(['logs', c.id])).stdout;
      return want.test(out) ? out : undefined;
    }, 90000);

  before(async () => {
    const bed = JSON.parse(readFileSync(requiredEnv('USERNODE_TEST_IMAGES'), 'utf8')) as { registry: string };
    busybox = `${bed.registry}/usernode/busybox:latest`;
    node = await TestNode.create();
    await node.writeConfig(`registries:\n  "${bed.registry}": { plainHttp: true }\n`);
    dir = join(node.dir, 'config', 'usernode', 'manifests');
    await mkdir(dir, { recursive: true });
    hostData = join(node.dir, 'host-data');
    await mkdir(hostData);
    await writeFile(join(hostData, 'in'), 'from-the-host\n');
    agent = node.start();
    await agent.ready();
  });

  after(async () => {
    agent?.child.kill('SIGTERM');
    await agent?.exited;
    if (node) await rm(await memoryVolumeRoot(node.runtimeDir, process.getuid!()), { recursive: true, force: true });
    await node?.destroy();
  });

  it('shares an emptyDir between two containers; Memory emptyDir is a tmpfs; labels via downwardAPI; a hostPath of the user; $(VAR) expanded', async () => {
    const pod = {
      apiVersion: 'v1',
      kind: 'Pod',
      metadata: { name: 'vols', labels: { app: 'vols', tier: 'back' } },
      spec: {
        volumes: [
          { name: 'shared', emptyDir: {} },
          { name: 'mem', emptyDir: { medium: 'Memory' } },
          { name: 'info', downwardAPI: { items: [{ path: 'labels', fieldRef: { fieldPath: 'metadata.labels' } }] } },
          { name: 'host', hostPath: { path: hostData, type: 'Directory' } },
        ],
        containers: [
          {
            name: 'writer',
            image: busybox,
            env: [
              { name: 'GREETING', value: 'hello' },
              { name: 'MSG', value: '$(GREETING) world' },
            ],
            // $(MSG) is expanded by the node before the shell sees it; the chown makes files the user can remove only as the node namespace's root.
            command: ['sh', '-c', 'echo shared-hello > /shared/msg; mkdir -p /shared/d && touch /shared/d/f && chown -R 1000:1000 /shared/d && chmod 755 /shared/d; echo from-the-pod > /host/out; echo "expanded=$(MSG) host=$(cat /host/in)"; sleep 300'],
            volumeMounts: [
              { name: 'shared', mountPath: '/shared' },
              { name: 'host', mountPath: '/host' },
            ],
          },
          {
            name: 'reader',
            image: busybox,
            command: ['sh', '-c', 'while [ ! -f /shared/msg ]; do sleep 0.2; done; echo "got=$(cat /shared/msg)"; echo "mem=$(awk \'$2 == "/mem" { print $3 }\' /proc/mounts)"; echo "memwrite=$(echo x > /mem/f && cat /mem/f)"; echo "labels=$(tr \'\\n\' , < /info/labels)"; echo "info-ro=$(touch /info/x 2>/dev/null && echo no || echo yes)"; sleep 300'],
            volumeMounts: [
              { name: 'shared', mountPath: '/shared', readOnly: true },
              { name: 'mem', mountPath: '/mem' },
              { name: 'info', mountPath: '/info' },
            ],
          },
        ],
      },
    };
    await writeFile(join(dir, 'vols.json'), JSON.stringify(pod));
    const writer = await logsOf('writer', /expanded=/);
    assert.match(writer, /^expanded=hello world host=from-the-host$/m);
    const reader = await logsOf('reader', /info-ro=/);
    assert.match(reader, /^got=shared-hello$/m, 'the reader sees what the writer wrote in the emptyDir');
    assert.match(reader, /^mem=tmpfs$/m, 'a Memory emptyDir is on a tmpfs');
    assert.match(reader, /^memwrite=x$/m);
    assert.match(reader, /^labels=app="vols",tier="back",?$/m);
    assert.match(reader, /^info-ro=yes$/m, 'a downwardAPI volume is read-only');
    assert.equal(await readFile(join(hostData, 'out'), 'utf8'), 'from-the-pod\n', "the pod wrote into the user's hostPath");
  });

  it("a hostPath the user does not own keeps the pod from starting, and the log says why; the others run on", async () => {
    await writeFile(
      join(dir, 'forbidden.yaml'),
      `apiVersion: v1\nkind: Pod\nmetadata: { name: forbidden }\nspec:\n  volumes: [{ name: root, hostPath: { path: /root } }]\n  containers:\n    - name: snoop\n      image: ${busybox}\n      command: [ls, /r]\n      volumeMounts: [{ name: root, mountPath: /r }]\n`,
    );
    await eventually('the refusal in the log', async () => (/pod could not be started.*forbidden.*\/root is owned by uid 0: a usernode pod may mount only paths its user \(uid \d+\) owns/.test(agent.log) ? true : undefined), 30000);
    const pods = JSON.parse((await node.crictl(['pods', '--name', '^forbidden$', '-o', 'json'])).stdout) as { items: unknown[] };
    assert.equal(pods.items.length, 0, 'no sandbox was made for it');
    assert.equal((await containers('reader'))[0]?.state, 'CONTAINER_RUNNING');
    await rm(join(dir, 'forbidden.yaml'));
  });

  it("a removed pod's volumes go, files a container made as another user too; the hostPath stays", async () => {
    const volumes = join(node.dir, 'data', 'usernode', 'pods', 'volumes');
    const [uid] = await readdir(volumes);
    assert.ok(uid, 'the pod has a volume folder');
    assert.equal((await stat(join(volumes, uid, 'volumes', 'shared', 'd'))).uid !== process.getuid!(), true, 'the container made a folder as a subordinate id');
    await rm(join(dir, 'vols.json'));
    await eventually('the volume folder to go', async () => ((await readdir(volumes)).length === 0 ? true : undefined), 60000);
    assert.equal(await readFile(join(hostData, 'in'), 'utf8'), 'from-the-host\n');
    assert.doesNotMatch(agent.log, /pod volumes could not be removed/);
  });

  it('mounts a subPath (made by the node half) and a subPathExpr; a subPath that is a symlink out of its volume keeps the container from being created, naming the mount', async () => {
    const pod = {
      apiVersion: 'v1',
      kind: 'Pod',
      metadata: { name: 'subpaths' },
      spec: {
        volumes: [{ name: 'shared', emptyDir: {} }],
        // A container plants a symlink to the node's / in the volume before the others are made.
        initContainers: [{ name: 'plant', image: busybox, command: ['ln', '-s', '/', '/all/escape'], volumeMounts: [{ name: 'shared', mountPath: '/all' }] }],
        containers: [
          {
            name: 'sub-writer',
            image: busybox,
            env: [{ name: 'DIR', value: 'by-expr' }],
            command: ['sh', '-c', 'echo from-sub > /ab/f; echo from-expr > /expr/g; echo "all=$(cat /all/a/b/f) $(cat /all/by-expr/g)"; sleep 300'],
            volumeMounts: [
              { name: 'shared', mountPath: '/all' },
              { name: 'shared', mountPath: '/ab', subPath: 'a/b' },
              { name: 'shared', mountPath: '/expr', subPathExpr: '$(DIR)' },
            ],
          },
          {
            name: 'escaper',
            image: busybox,
            command: ['sh', '-c', 'ls /root-of-node; sleep 300'],
            volumeMounts: [{ name: 'shared', mountPath: '/root-of-node', subPath: 'escape' }],
          },
        ],
      },
    };
    await writeFile(join(dir, 'subpaths.json'), JSON.stringify(pod));
    assert.match(await logsOf('sub-writer', /all=/), /^all=from-sub from-expr$/m);
    await eventually('the escaping subPath refused, naming the mount', async () => (/spec\.containers\[1\]\.volumeMounts\[0\]\.subPath: subPath escape leads out of the volume/.test(agent.log) ? true : undefined), 60000);
    assert.deepEqual(await containers('escaper'), [], 'the container with the escaping subPath was made');
    await rm(join(dir, 'subpaths.json'));
  });
});
