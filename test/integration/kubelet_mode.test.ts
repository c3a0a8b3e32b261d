import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { readdir, readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';

import { type AgentProcess, eventually, freePort, requiredEnv, TestNode } from '../lib/agent.js';
import { type ControlPlane, requiredControlPlaneTool, startControlPlane } from '../lib/control_plane.js';
import { isAlive } from '../../pkg/netns/procfs.js';

// Kubelet mode: the upstream kubelet the bed builds (v1.37.2) runs inside the
// node namespace on usernode's CRI socket (`usernode run --kubelet`), against
// the bed's real control plane. kubelet registers the node and runs the pods;
// kubectl's logs, exec and port-forward go through kubelet's own streaming
// proxy to usernode's streaming server. kubelet's log is read at the end: a CRI
// error it logs again and again fails the test.

const nodeName = 'usernode-kubelet';

const alive = isAlive;

type Pod = {
  metadata: { name: string; uid: string };
  spec: { nodeName?: string };
  status: { phase?: string; podIP?: string; hostIP?: string; containerStatuses?: Array<{ ready: boolean; containerID?: string; state: Record<string, unknown> }> };
};

/**
 * kubelet log lines that name a CRI failure, with the call, counted by what
 * they say once ids and times are taken out: one that comes back is a call
 * usernode keeps failing.
 */
function repeatedCriErrors(log: string, allowed: readonly RegExp[]): Array<{ line: string; count: number }> {
  const counts = new Map<string, number>();
  for (const line of log.split('\n')) {
    if (!/^E\d{4}/.test(line)) continue;
    // A CRI call that failed is a gRPC status in kubelet's words: "rpc error: code = … desc = …".
    if (!/rpc error: code = /.test(line)) continue;
    if (allowed.some((r) => r.test(line))) continue;
    const key = line
      .replace(/^E\d{4} [\d:.]+\s+\d+ /, '')
      .replace(/[0-9a-f]{64}/g, 'ID')
      .replace(/\b[0-9a-f-]{36}\b/g, 'UID')
      .replace(/\d+(\.\d+)?(ms|s|µs)\b/g, 'T');
    counts.set(key, (counts.get(key) ?? 0) + 1);
  }
  return [...counts].filter(([, n]) => n >= 3).map(([line, count]) => ({ line, count }));
}

describe('kubelet mode: the upstream kubelet on usernode (real control plane, kubectl)', () => {
  let cp: ControlPlane;
  let node: TestNode;
  let agent: AgentProcess;
  let busybox: string;
  let kubeletLog: string;
  let agentArgs: string[];

  const kubectl = async (args: string[], input?: string): Promise<string> => {
    const r = await cp.kubectl(args, input === undefined ? {} : { input });
    if (r.code !== 0) throw new Error(`kubectl ${args.join(' ')}: ${r.stderr}`);
    return r.stdout;
  };
  const pod = async (name: string): Promise<Pod | undefined> => {
    const r = await cp.kubectl(['get', 'pod', name, '-o', 'json']);
    return r.code === 0 ? (JSON.parse(r.stdout) as Pod) : undefined;
  };
  const logTail = async (): Promise<string> => (await readFile(kubeletLog, 'utf8').catch(() => '')).split('\n').slice(-60).join('\n');

  before(async () => {
    cp = await startControlPlane({ reachableFromNodeNamespace: true });
    const bed = JSON.parse(readFileSync(requiredEnv('USERNODE_TEST_IMAGES'), 'utf8')) as { registry: string };
    busybox = `${bed.registry}/usernode/busybox:latest`;
    node = await TestNode.create();
    kubeletLog = join(node.dir, 'data', 'usernode', 'kubelet', 'kubelet.log');
    await node.writeConfig(`registries:\n  "${bed.registry}": { plainHttp: true }\nclientCAFile: ${cp.caFile}\n`);
    const kubeconfig = await cp.nodeKubeconfig(nodeName, { server: cp.hostServer! });
    const kubeletPort = await freePort();
    agentArgs = [
      '--kubelet', requiredControlPlaneTool('USERNODE_KUBELET'),
      '--kubeconfig', kubeconfig,
      '--node-name', nodeName,
      '--node-ip', cp.hostIP!,
      '--kubelet-address', `${cp.hostIP!}:${kubeletPort}`,
    ];
    agent = node.start(agentArgs);
    await agent.ready();
  });

  after(async () => {
    agent?.child.kill('SIGTERM');
    await agent?.exited;
    await node?.destroy();
    await cp?.stop();
  });

  it('kubelet registers the node Ready, with usernode as its container runtime', async () => {
    const n = await eventually('the node Ready', async () => {
      const r = await cp.kubectl(['get', 'node', nodeName, '-o', 'json']);
      if (r.code !== 0) return undefined;
      const o = JSON.parse(r.stdout) as { status: { conditions?: Array<{ type: string; status: string }>; nodeInfo: Record<string, string>; addresses: Array<{ type: string; address: string }> } };
      return o.status.conditions?.find((c) => c.type === 'Ready')?.status === 'True' ? o : undefined;
    }, 120000).catch(async (e: unknown) => {
      throw new Error(`${(e as Error).message}\nagent:\n${agent.log.slice(-3000)}\nkubelet:\n${await logTail()}`);
    });
    assert.match(n.status.nodeInfo.containerRuntimeVersion!, /^usernode:\/\/\d+\.\d+\.\d+/);
    // The upstream kubelet, not usernode's node half, registered it.
    assert.equal(n.status.nodeInfo.kubeletVersion, 'v1.37.2');
    assert.equal(n.status.addresses.find((a) => a.type === 'InternalIP')?.address, cp.hostIP);
    assert.doesNotMatch(agent.log, /joining the cluster/, 'the node half stays off');
  });

  it('a pod applied with kubectl runs; kubectl logs, exec and port-forward work through kubelet', async () => {
    await kubectl(['apply', '-f', '-'], `apiVersion: v1
kind: Pod
metadata: { name: hello }
spec:
  terminationGracePeriodSeconds: 2
  containers:
    - name: app
      image: ${busybox}
      command: ["sh", "-c", "echo hello from kubelet on usernode; mkdir -p /www; echo served by the pod > /www/index.html; httpd -p 8080 -h /www; i=0; while true; do i=$((i+1)); echo line $i; sleep 1; done"]
`);
    const p = await eventually('pod hello Running', async () => {
      const x = await pod('hello');
      return x?.status.phase === 'Running' && x.status.containerStatuses?.every((c) => c.ready) ? x : undefined;
    }, 120000).catch(async (e: unknown) => {
      throw new Error(`${(e as Error).message}\n${await kubectl(['describe', 'pod', 'hello']).catch(() => '')}\nkubelet:\n${await logTail()}`);
    });
    assert.equal(p.spec.nodeName, nodeName);
    assert.match(p.status.podIP ?? '', /^10\.88\./);
    assert.match(p.status.containerStatuses![0]!.containerID ?? '', /^usernode:\/\/[0-9a-f]{64}$/);

    const logs = await eventually('logs', async () => {
      const out = await kubectl(['logs', 'hello']);
      return out.includes('line 2') ? out : undefined;
    });
    assert.match(logs, /^hello from kubelet on usernode\n/);
    assert.equal(await kubectl(['exec', 'hello', '--', 'sh', '-c', 'echo in $(hostname)']), 'in hello\n');
    assert.equal(await kubectl(['exec', '-i', 'hello', '--', 'cat'], 'through stdin\n'), 'through stdin\n');
    const local = await freePort();
    const pf = spawn(requiredControlPlaneTool('USERNODE_KUBECTL'), ['--kubeconfig', cp.adminKubeconfig, 'port-forward', 'pod/hello', `${local}:8080`]);
    let pfErr = '';
    pf.stderr.on('data', (d: Buffer) => (pfErr += d.toString()));
    try {
      const page = await eventually('the page through port-forward', async () => {
        const r = await fetch(`http://127.0.0.1:${local}/`, { signal: AbortSignal.timeout(3000) });
        return r.ok ? r.text() : undefined;
      }, 30000).catch((e: unknown) => {
        throw new Error(`${(e as Error).message}\nkubectl port-forward said: ${pfErr}`);
      });
      assert.equal(page, 'served by the pod\n');
    } finally {
      pf.kill();
    }
  });

  it('an agent restart keeps the pod running, its volumes under /var/lib/kubelet and kubelet serving', async () => {
    const before = (await pod('hello'))!;
    const containerID = before.status.containerStatuses![0]!.containerID;
    const volumes = join(node.dir, 'data', 'usernode', 'kubelet', 'root', 'pods', before.metadata.uid, 'volumes');
    assert.ok((await readdir(volumes)).length > 0, `the pod's volumes are in the user's data folder (${volumes})`);
    agent.child.kill('SIGTERM');
    assert.equal((await agent.exited).code, 0);
    agent = node.start(agentArgs);
    await agent.ready();
    // The same container, never restarted, and kubelet's streaming proxy working again.
    const after = await eventually('hello Running and ready after the restart', async () => {
      const x = await pod('hello');
      return x?.status.containerStatuses?.[0]?.ready ? x : undefined;
    }, 60000);
    assert.equal(after.status.containerStatuses![0]!.containerID, containerID);
    assert.equal(await eventually('exec after the restart', () => kubectl(['exec', 'hello', '--', 'cat', '/www/index.html']).catch(() => undefined), 60000), 'served by the pod\n');
    assert.match(agent.log, /reusing the node namespace/);
  });

  it('an agent killed outright: the next one stops the kubelet it left, and one kubelet serves the node', async () => {
    const pidFile = join(node.runtimeDir, 'kubelet.pid');
    const left = Number((await readFile(pidFile, 'utf8')).trim());
    agent.child.kill('SIGKILL');
    await agent.exited;
    assert.ok(alive(left), 'the kubelet outlives an agent killed outright');
    agent = node.start(agentArgs);
    await agent.ready();
    await eventually('the old kubelet gone', async () => (alive(left) ? undefined : true), 30000);
    // The new kubelet writes its pid once it has started, which may be a moment after the old one is gone.
    const now = await eventually('the new kubelet started', async () => {
      const pid = Number((await readFile(pidFile, 'utf8').catch(() => '')).trim());
      return pid > 0 && pid !== left && alive(pid) ? pid : undefined;
    }, 30000);
    assert.notEqual(now, left);
    assert.match(agent.log, /stopping a kubelet left by an earlier agent/);
    assert.equal(await eventually('exec through the new kubelet', () => kubectl(['exec', 'hello', '--', 'echo', 'again']).catch(() => undefined), 60000), 'again\n');
  });

  it('deleting the pod removes its containers and its network namespace', async () => {
    const sandboxes = async (): Promise<string[]> => {
      const r = await node.crictl(['pods', '-q', '--name', 'hello']);
      assert.equal(r.code, 0, r.stderr);
      return r.stdout.split('\n').filter(Boolean);
    };
    const [id] = await sandboxes();
    assert.ok(id, 'the pod sandbox is listed');
    const netnsDir = join(node.runtimeDir, 'netns');
    assert.ok((await readdir(netnsDir)).includes(id), 'the pod has a network namespace folder');
    await kubectl(['delete', 'pod', 'hello', '--wait=true', '--timeout=60s']);
    await eventually('the sandbox removed', async () => ((await sandboxes()).length === 0 ? true : undefined), 60000);
    const containers = await node.crictl(['ps', '-a', '-q', '--pod', id]);
    assert.equal(containers.stdout.trim(), '');
    assert.ok(!(await readdir(netnsDir)).includes(id), 'its network namespace is gone');
  });

  // PodAndContainerStatsFromCRI: the pods' numbers in all three come from usernode's stats RPCs.
  it("kubelet's summary API, /metrics/resource and /metrics/cadvisor show the pod, from usernode's CRI stats", async () => {
    await kubectl(['run', 'stats', `--image=${busybox}`, '--restart=Never', '--', 'sh', '-c', 'exec sleep 3600']);
    await eventually('pod stats Running', async () => ((await pod('stats'))?.status.phase === 'Running' ? true : undefined), 120000);
    type Summary = { node: { nodeName: string; fs?: { capacityBytes?: number } }; pods: Array<{ podRef: { name: string }; containers?: Array<{ name: string; cpu?: { usageCoreNanoSeconds?: number }; memory?: { workingSetBytes?: number } }> }> };
    const summary = await eventually('the pod in the summary with CPU and memory', async () => {
      const s = JSON.parse(await kubectl(['get', '--raw', `/api/v1/nodes/${nodeName}/proxy/stats/summary`])) as Summary;
      const c = s.pods.find((p) => p.podRef.name === 'stats')?.containers?.[0];
      return c?.cpu?.usageCoreNanoSeconds !== undefined && c.memory?.workingSetBytes !== undefined ? s : undefined;
    }, 60000);
    assert.equal(summary.node.nodeName, nodeName);
    // The root file system's stats, from kubelet's own cAdvisor (localStorageCapacityIsolation): what eviction reads.
    assert.ok((summary.node.fs?.capacityBytes ?? 0) > 0, `node fs: ${JSON.stringify(summary.node.fs)}`);
    const cadvisor = await kubectl(['get', '--raw', `/api/v1/nodes/${nodeName}/proxy/metrics/cadvisor`]);
    // The CRI's base labels (id, name, image), as CRI-O gives them; the container is named after the pod by kubectl run.
    assert.match(cadvisor, /^container_cpu_usage_seconds_total\{[^}]*name="stats"/m);
    assert.match(cadvisor, /^container_memory_working_set_bytes\{[^}]*name="stats"[^}]*\} [1-9]/m);
    const resource = await kubectl(['get', '--raw', `/api/v1/nodes/${nodeName}/proxy/metrics/resource`]);
    assert.match(resource, /^container_memory_working_set_bytes\{[^}]*pod="stats"/m);
    await kubectl(['delete', 'pod', 'stats', '--wait=false']);
  });

  it('every CRI call kubelet made was answered (none UNIMPLEMENTED)', async () => {
    const text = await (await fetch(agent.metricsUrl)).text();
    const calls = [...text.matchAll(/^usernode_cri_operations_total\{service="([^"]+)",method="([^"]+)",code="([^"]+)"\} (\d+)/gm)].map((m) => ({ method: `${m[1]}/${m[2]}`, code: m[3]!, n: Number(m[4]) }));
    console.log(`CRI calls served: ${calls.map((c) => `${c.method} ${c.code}×${c.n}`).join(', ')}`);
    assert.ok(calls.some((c) => c.method.endsWith('/RunPodSandbox') && c.code === 'OK'), 'kubelet ran pods through the CRI');
    assert.deepEqual(calls.filter((c) => c.code === 'UNIMPLEMENTED'), []);
  });

  it("kubelet's log shows no repeated CRI errors", async () => {
    const log = await readFile(kubeletLog, 'utf8');
    // For the record (the closing note): every error kubelet logged, counted.
    const errors = new Map<string, number>();
    for (const l of log.split('\n')) if (/^[EF]\d{4}|^Error: /.test(l)) {
      const k = l.replace(/^([EF])\d{4} [\d:.]+\s+\d+ /, '$1 ').replace(/[0-9a-f]{64}/g, 'ID').slice(0, 300);
      errors.set(k, (errors.get(k) ?? 0) + 1);
    }
    console.log(`kubelet's errors:\n${[...errors].map(([k, n]) => `${n}× ${k}`).join('\n')}`);
    assert.match(log, /Kubelet version/i);
    // The eviction manager gets its numbers (the summary, the root and image file systems).
    assert.doesNotMatch(log, /Eviction manager: failed to synchronize/);
    const repeated = repeatedCriErrors(log, [
      // kubelet's own call, once per kubelet start: with cgroupsPerQOS off its in-place resize
      // check (kuberuntime_manager.go:1194, cri_stats_provider.go:288) asks PodSandboxStats for
      // an empty sandbox id; usernode answers InvalidArgument, as it does any call without an id.
      /PodSandbox from runtime service failed" err="rpc error: code = InvalidArgument desc = pod_sandbox_id is required" podSandboxID=""/,
    ]);
    assert.deepEqual(repeated, [], `kubelet logged CRI errors again and again:\n${repeated.map((r) => `${r.count}× ${r.line}`).join('\n')}`);
  });
});
