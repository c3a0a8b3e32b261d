import assert from 'node:assert/strict';
import { readdirSync, readFileSync, readlinkSync } from 'node:fs';
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';

import { criClients, type CriClients } from '../../proto/client.js';
import { silentLogger } from '../../pkg/log/logger.js';
import { enterArgv, type NodeNamespace } from '../../pkg/netns/node_namespace.js';
import { execProber } from '../../pkg/node/prober_exec.js';
import { combinedProber, netProber, type NetProber, type Prober, type ProbeSpec, probeWorkerScript } from '../../pkg/node/prober_net.js';
import { type AgentProcess, createContainer, eventually, startBusyboxPod, type TestNode } from '../lib/agent.js';

// Probes against a real pod on a real agent: the network probes are made from
// the node namespace (where pod IPs route) by the probe worker entered there
// as `usernode enter` enters it; exec probes go through the runtime's
// ExecSync. A busybox pod serves HTTP on 8080 (httpd) and TCP on 9000 (nc).

const http = (port: number, path: string): ProbeSpec => ({ kind: 'httpGet', scheme: 'HTTP', port, path, httpHeaders: [] });

/** This user's probe workers started from this tree (the worker's command line names its script). */
function probeWorkers(): number[] {
  const pids: number[] = [];
  for (const d of readdirSync('/proc')) {
    if (!/^\d+$/.test(d)) continue;
    try {
      if (readFileSync(`/proc/${d}/cmdline`, 'utf8').split('\0').includes(probeWorkerScript)) pids.push(Number(d));
    } catch {
      // gone meanwhile
    }
  }
  return pids;
}

describe('probes against a running pod', () => {
  let node: TestNode;
  let agent: AgentProcess;
  let cri: CriClients;
  let net: NetProber;
  let prober: Prober;
  let podIP = '';
  let web = '';

  before(async () => {
    let pod: string;
    let podFile: string;
    let busybox: string;
    ({ node, agent, busybox, pod, podFile } = await startBusyboxPod((dir) => ({ metadata: { name: 'probed', namespace: 'default', uid: 'probed-uid', attempt: 0 }, hostname: 'probed', log_directory: join(dir, 'logs'), linux: {} })));
    const container = (name: string, script: string): Record<string, unknown> => ({ metadata: { name }, image: { image: busybox }, command: ['sh', '-c', script], log_path: `${name}/0.log`, linux: {} });
    web = await createContainer(node, pod, podFile, container('web', 'mkdir -p /www && echo ok > /www/healthz && exec httpd -f -p 8080 -h /www'));
    const tcp = await createContainer(node, pod, podFile, container('tcp', 'exec nc -ll -p 9000 -e /bin/true'));
    for (const id of [web, tcp]) assert.equal((await node.crictl(['start', id])).code, 0);
    const inspect = await node.crictl(['inspectp', pod]);
    podIP = (JSON.parse(inspect.stdout) as { status: { network: { ip: string } } }).status.network.ip;
    assert.match(podIP, /^10\.88\./);

    // The node namespace entry the agent recorded, entered as `usernode enter` does.
    const ns = JSON.parse(await readFile(join(node.runtimeDir, 'node-namespace.json'), 'utf8')) as NodeNamespace;
    net = netProber({ enter: (argv) => enterArgv('/usr/bin/nsenter', ns, argv), log: silentLogger });
    cri = criClients(node.socket);
    prober = combinedProber({ exec: execProber(cri), net });
    await eventually('httpd in the pod', async () => ((await prober.run(http(8080, '/healthz'), { containerId: web, podIP, timeoutMs: 1000 })).result === 'success' ? true : undefined));
  });

  after(async () => {
    await prober?.close?.();
    cri?.close();
    agent?.child.kill('SIGTERM');
    await node?.destroy();
  });

  const target = (timeoutMs = 1000): { containerId: string; podIP: string; timeoutMs: number } => ({ containerId: web, podIP, timeoutMs });

  it('httpGet: 200 on the pod IP is success with the body; a 404 path and a closed port are failures', async () => {
    assert.deepEqual(await prober.run(http(8080, '/healthz'), target()), { result: 'success', output: 'ok\n' });
    assert.deepEqual(await prober.run(http(8080, '/nothing-here'), target()), { result: 'failure', output: 'HTTP probe failed with statuscode: 404' });
    const closed = await prober.run(http(8081, '/healthz'), target());
    assert.equal(closed.result, 'failure');
    assert.match(closed.output, new RegExp(`dial tcp ${podIP.replaceAll('.', '\\.')}:8081: connect: connection refused`));
  });

  it('the same probe from the host namespace cannot reach the pod IP (why the worker is in the node namespace)', async () => {
    const outside = netProber({ enter: (argv) => argv, log: silentLogger });
    try {
      assert.equal((await outside.run(http(8080, '/healthz'), target())).result, 'failure');
    } finally {
      await outside.close();
    }
  });

  it('tcpSocket: success on the listening port, failure on a closed one', async () => {
    assert.deepEqual(await prober.run({ kind: 'tcpSocket', port: 9000 }, target()), { result: 'success', output: '' });
    const closed = await prober.run({ kind: 'tcpSocket', port: 9001 }, target());
    assert.equal(closed.result, 'failure');
    assert.match(closed.output, /connect: connection refused/);
  });

  it('a blackholed address fails with "timeout" within the timeout', async () => {
    // On the pod bridge's subnet, where nothing answers ARP: the connect waits.
    for (const spec of [{ kind: 'tcpSocket', host: '10.88.255.254', port: 80 }, { kind: 'httpGet', scheme: 'HTTP', host: '10.88.255.254', port: 80, path: '/', httpHeaders: [] }] satisfies ProbeSpec[]) {
      const t0 = Date.now();
      const o = await prober.run(spec, target(700));
      const took = Date.now() - t0;
      assert.equal(o.result, 'failure');
      assert.match(o.output, /^timeout: .* did not complete within 700ms$/);
      assert.ok(took >= 650 && took < 1500, `${spec.kind} took ${took} ms`);
    }
  });

  it('many probes in parallel share one worker process in the node namespace', async () => {
    const specs: ProbeSpec[] = Array.from({ length: 60 }, (_, i) => (i % 2 === 0 ? http(8080, '/healthz') : { kind: 'tcpSocket', port: 9000 }));
    const outcomes = await Promise.all(specs.map((s) => prober.run(s, target(5000))));
    assert.deepEqual(
      outcomes.filter((o) => o.result !== 'success'),
      [],
    );
    assert.deepEqual(probeWorkers(), [net.workerPid]);
    const worker = net.workerPid!;
    const nodeNetns = (await node.nodeNamespaceRecord()).netNs;
    assert.equal(readlinkSync(`/proc/${worker}/ns/net`), nodeNetns, 'the worker is in the node network namespace');
  });

  it('exec: exit 0 is success with the output, a non-zero exit a failure, a command past the timeout a failure that says so', async () => {
    assert.deepEqual(await prober.run({ kind: 'exec', command: ['cat', '/www/healthz'] }, target()), { result: 'success', output: 'ok\n' });
    const failed = await prober.run({ kind: 'exec', command: ['sh', '-c', 'echo not ready >&2; exit 3'] }, target());
    assert.deepEqual(failed, { result: 'failure', output: 'not ready\n' });
    const t0 = Date.now();
    const slow = await prober.run({ kind: 'exec', command: ['sleep', '30'] }, target(1000));
    assert.deepEqual(slow, { result: 'failure', output: 'command "sleep 30" timed out' });
    assert.ok(Date.now() - t0 < 5000, `the exec probe took ${Date.now() - t0} ms`);
  });

  it('closing the prober ends its worker', async () => {
    await net.close();
    await eventually('the worker to exit', async () => (probeWorkers().length === 0 ? true : undefined), 5000);
  });
});
