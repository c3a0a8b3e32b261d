import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { request } from 'node:https';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';

import { type AgentProcess, eventually, freePort, requiredEnv, sleep, TestNode } from '../lib/agent.js';
import { type ControlPlane, type ControlPlaneRelease, releaseVersion, startControlPlane } from '../lib/control_plane.js';

// Version skew: the node half supports the four latest kube-apiserver minors
// (pkg/node/apiserver_version.ts, v1.34 to v1.37); these scenarios run against the
// oldest and the newest (the bed's two builds). The one that broke: after an agent
// restart the pods bound to the node come from a LIST, whose items carry no
// apiVersion/kind (v1.34.4 and v1.37.2 alike), and every one was made Failed
// (UnsupportedPodSpec) and replaced by its Deployment.

const nodeName = 'usernode-skew';

type Pod = {
  metadata: { name: string; uid: string };
  spec: { nodeName?: string };
  status: {
    phase?: string;
    reason?: string;
    message?: string;
    containerStatuses?: Array<{ name: string; ready: boolean; restartCount: number; containerID?: string; state: Record<string, unknown> }>;
  };
};

for (const release of ['oldest', 'newest'] as const satisfies readonly ControlPlaneRelease[]) {
  describe(`usernode with kube-apiserver ${releaseVersion(release)} (the ${release} supported release)`, () => {
    let cp: ControlPlane;
    let node: TestNode;
    let agent: AgentProcess;
    let busybox: string;
    let kubeletPort: number;

    const kubectl = async (args: string[], input?: string): Promise<string> => {
      const r = await cp.kubectl(args, input === undefined ? {} : { input });
      if (r.code !== 0) throw new Error(`kubectl ${args.join(' ')}: ${r.stderr}`);
      return r.stdout;
    };
    const webPods = async (): Promise<Pod[]> => (JSON.parse(await kubectl(['get', 'pods', '-l', 'app=skew', '-o', 'json'])) as { items: Pod[] }).items;
    const agentArgs = async (): Promise<string[]> => [
      '--kubeconfig', await cp.nodeKubeconfig(nodeName), '--node-name', nodeName, '--node-ip', '127.0.0.1', '--kubelet-address', `127.0.0.1:${kubeletPort}`,
    ];
    // The kubelet API's /pods, asked directly as the apiserver asks it (its kubelet client certificate;
    // the apiserver's node proxy refuses a node on 127.0.0.1): the pods the node half holds.
    const kubeletPodUids = (): Promise<Set<string>> =>
      new Promise((resolve, reject) => {
        const pki = join(cp.dir, 'pki');
        const req = request(
          `https://127.0.0.1:${kubeletPort}/pods`,
          { cert: readFileSync(join(pki, 'kubelet-client.crt')), key: readFileSync(join(pki, 'kubelet-client.key')), rejectUnauthorized: false, timeout: 5000 },
          (res) => {
            let body = '';
            res.setEncoding('utf8');
            res.on('data', (d: string) => (body += d));
            res.on('end', () => {
              if (res.statusCode !== 200) return reject(new Error(`GET /pods: ${res.statusCode} ${body}`));
              resolve(new Set((JSON.parse(body) as { items: Array<{ metadata: { uid: string } }> }).items.map((p) => p.metadata.uid)));
            });
          },
        );
        req.on('timeout', () => req.destroy(new Error('GET /pods: timed out')));
        req.on('error', reject);
        req.end();
      });
    const failure = async (): Promise<string> => `\n--- agent log:\n${agent.log.split('\n').slice(-60).join('\n')}\n${await cp.logs()}`;

    before(async () => {
      cp = await startControlPlane({ release });
      const bed = JSON.parse(readFileSync(requiredEnv('USERNODE_TEST_IMAGES'), 'utf8')) as { registry: string };
      busybox = `${bed.registry}/usernode/busybox:latest`;
      node = await TestNode.create();
      kubeletPort = await freePort();
      await node.writeConfig(`registries:\n  "${bed.registry}": { plainHttp: true }\nclientCAFile: ${cp.caFile}\n`);
      agent = node.start(await agentArgs());
      await agent.ready();
    });

    after(async () => {
      agent?.child.kill('SIGTERM');
      await agent?.exited;
      await node?.destroy();
      await cp?.stop();
    });

    it('the node registers Ready and renews its Lease; the agent logs the server version within the supported range', async () => {
      assert.equal(cp.version, releaseVersion(release));
      await eventually('the node Ready', async () => {
        const r = await cp.kubectl(['get', 'node', nodeName, '-o', 'json']);
        if (r.code !== 0) return undefined;
        const n = JSON.parse(r.stdout) as { status: { conditions?: Array<{ type: string; status: string }> } };
        return n.status.conditions?.find((c) => c.type === 'Ready')?.status === 'True' ? true : undefined;
      }, 60000);
      const renewTime = async (): Promise<string> => (JSON.parse(await kubectl(['get', 'lease', '-n', 'kube-node-lease', nodeName, '-o', 'json'])) as { spec: { renewTime: string } }).spec.renewTime;
      const first = await eventually('the node Lease', () => renewTime());
      await eventually('the Lease renewed', async () => ((await renewTime()) !== first ? true : undefined), 30000);
      const line = agent.log.split('\n').find((l) => l.includes('msg="kube-apiserver version'));
      assert.ok(line, `the agent logs the server's version:\n${agent.log}`);
      assert.match(line, new RegExp(`level=info .*version=${cp.version.replaceAll('.', '\\.')} .*supported="v1\\.34 to v1\\.37"`));
    });

    it('a Deployment of 3 replicas runs; kubectl logs and exec reach its pods', async () => {
      await kubectl(['apply', '-f', '-'], `apiVersion: apps/v1
kind: Deployment
metadata: { name: skew }
spec:
  replicas: 3
  selector: { matchLabels: { app: skew } }
  template:
    metadata: { labels: { app: skew } }
    spec:
      terminationGracePeriodSeconds: 2
      containers:
        - name: web
          image: ${busybox}
          command: ["sh", "-c", "echo up; exec sleep 3600"]
`);
      const pods = await eventually('3 pods Running and ready', async () => {
        const ps = await webPods();
        return ps.length === 3 && ps.every((p) => p.status.phase === 'Running' && p.status.containerStatuses?.every((c) => c.ready)) ? ps : undefined;
      }, 120000).catch(async (e: unknown) => assert.fail(`${(e as Error).message}: ${JSON.stringify((await webPods()).map((p) => p.status))}${await failure()}`));
      assert.ok(pods.every((p) => p.spec.nodeName === nodeName));
      const name = pods[0]!.metadata.name;
      assert.equal(await eventually('kubectl logs', async () => ((await kubectl(['logs', name])) === 'up\n' ? 'up\n' : undefined)), 'up\n');
      assert.equal(await kubectl(['exec', name, '--', 'sh', '-c', 'echo in $(hostname)']), `in ${name}\n`);
    });

    it('an agent restart (SIGTERM, run again) keeps every pod Running with the same containers; none becomes Failed', async () => {
      const before = new Map((await webPods()).map((p) => [p.metadata.uid, p]));
      assert.equal(before.size, 3);
      agent.child.kill('SIGTERM');
      const exit = await agent.exited;
      assert.equal(exit.code, 0, `the agent stops cleanly on SIGTERM${await failure()}`);
      agent = node.start(await agentArgs());
      await agent.ready();
      // The restarted node half has LISTed the pods bound to it when its kubelet API serves them
      // (/pods: what the pod config holds); with the v1.34 bug they are refused (Failed) instead.
      const outcome = await eventually('the restarted agent to take the listed pods (or refuse one)', async () => {
        const ps = await webPods();
        if (ps.some((p) => p.status.phase === 'Failed')) return 'failed';
        const uids = await kubeletPodUids();
        return [...before.keys()].every((u) => uids.has(u)) ? 'listed' : undefined;
      }, 60000);
      // Then a few seconds for a status write (the pod worker's first sync after the restart) to land.
      for (let i = 0; i < 10 && outcome === 'listed'; i++) {
        if ((await webPods()).some((p) => p.status.phase === 'Failed')) break;
        await sleep(500);
      }
      const after = await webPods();
      const failed = after.filter((p) => p.status.phase === 'Failed');
      assert.deepEqual(failed.map((p) => `${p.metadata.name}: ${p.status.reason}: ${p.status.message}`), [], `no pod becomes Failed after the restart${await failure()}`);
      assert.deepEqual(new Set(after.map((p) => p.metadata.uid)), new Set(before.keys()), 'the same pods (none replaced)');
      for (const p of after) {
        const was = before.get(p.metadata.uid)!.status.containerStatuses![0]!;
        const now = p.status.containerStatuses![0]!;
        assert.equal(p.status.phase, 'Running', p.metadata.name);
        assert.equal(now.containerID, was.containerID, `${p.metadata.name}: the same container`);
        assert.equal(now.restartCount, 0, `${p.metadata.name}: not restarted`);
        assert.ok(now.state.running, `${p.metadata.name}: ${JSON.stringify(now.state)}`);
      }
    });

    it('deleting the Deployment stops and removes its pods', async () => {
      await kubectl(['delete', 'deployment', 'skew', '--wait=false']);
      await eventually('the pods gone', async () => ((await webPods()).length === 0 ? true : undefined), 60000);
      await eventually('their sandboxes gone from the node', async () => {
        const r = await node.crictl(['pods', '-q', '--label', 'app=skew']);
        return r.code === 0 && r.stdout.trim() === '' ? true : undefined;
      });
    });
  });
}
