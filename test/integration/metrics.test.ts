import assert from 'node:assert/strict';
import { spawn, type ChildProcess } from 'node:child_process';
import { accessSync, constants, readFileSync } from 'node:fs';
import { mkdir, rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';

import { parse, stringify } from 'yaml';

import { type AgentProcess, eventually, exec, freePort, repoRoot, requiredEnv, TestNode } from '../lib/agent.js';
import { kubeletGet, makeCA, makeClientCert } from '../lib/kubelet_certs.js';

// The metrics an operator scrapes, against the real agent running static
// pods (run by the node half, as kubelet runs them): the exposition passes
// promtool's checks, and a real Prometheus server scraping the agent every
// second answers the queries kubelet and cadvisor dashboards make. It scrapes
// with the jobs of manifests/prometheus/scrape-config.yaml, the kubelet API's
// over TLS with a client certificate (no control plane here to review a
// bearer token).

/** A binary of the Debian prometheus package (scripts/host-setup.sh --tests); missing is a failure, never a skip. */
function prometheusTool(name: 'prometheus' | 'promtool'): string {
  for (const dir of ['/usr/bin', '/usr/local/bin']) {
    const p = join(dir, name);
    try {
      accessSync(p, constants.X_OK);
      return p;
    } catch {
      // Not in this folder.
    }
  }
  throw new Error(`${name} is not installed: the metrics tests need the Debian prometheus package (sudo apt-get install prometheus, or scripts/host-setup.sh --tests)`);
}

interface ScrapeJob {
  job_name: string;
  static_configs: Array<{ targets: string[] }>;
  authorization?: unknown;
  tls_config?: Record<string, string>;
}

interface Sample {
  metric: Record<string, string>;
  value: [number, string];
}

describe('usernode metrics', () => {
  let node: TestNode;
  let agent: AgentProcess;
  let prometheus: ChildProcess | undefined;
  let prometheusLog = '';
  let busybox: string;
  let metricsPort: number;
  let kubeletPort: number;
  let promPort: number;
  let manifests: string;

  const base = (): string => `http://127.0.0.1:${metricsPort}`;
  const scrape = async (path: string): Promise<string> => {
    const r = await fetch(`${base()}${path}`, { signal: AbortSignal.timeout(10000) });
    assert.equal(r.status, 200, `GET ${path}: ${r.status}`);
    return r.text();
  };
  /** One series' value in an exposition. */
  const valueIn = (text: string, series: string): number | undefined => {
    const line = text.split('\n').find((l) => l.startsWith(`${series} `));
    return line === undefined ? undefined : Number(line.slice(series.length + 1).split(' ')[0]);
  };
  const query = async (q: string): Promise<Sample[]> => {
    const r = await fetch(`http://127.0.0.1:${promPort}/api/v1/query?query=${encodeURIComponent(q)}`, { signal: AbortSignal.timeout(5000) });
    const body = (await r.json()) as { status: string; error?: string; data: { result: Sample[] } };
    assert.equal(body.status, 'success', `query ${q}: ${body.error ?? ''}`);
    return body.data.result;
  };
  const manifest = (name: string): string => `apiVersion: v1
kind: Pod
metadata: { name: ${name}, namespace: metrics-test }
spec:
  containers:
    - name: app
      image: ${busybox}
      command: ["sh", "-c", "while :; do i=0; while [ $i -lt 20000 ]; do i=$((i+1)); done; sleep 1; done"]
`;

  before(async () => {
    // Both are needed: fail at once, naming the package, rather than after the pods are up.
    prometheusTool('promtool');
    const prometheusBin = prometheusTool('prometheus');
    const bed = JSON.parse(readFileSync(requiredEnv('USERNODE_TEST_IMAGES'), 'utf8')) as { registry: string };
    busybox = `${bed.registry}/usernode/busybox:latest`;
    metricsPort = await freePort();
    kubeletPort = await freePort();
    node = await TestNode.create();
    const certs = join(node.dir, 'certs');
    await mkdir(certs, { recursive: true });
    const ca = await makeCA(certs, 'client-ca');
    const client = await makeClientCert(certs, ca, 'prometheus', []);
    await node.writeConfig(
      `metricsAddress: "127.0.0.1:${metricsPort}"\nkubeletAddress: "127.0.0.1:${kubeletPort}"\nclientCAFile: ${ca.cert}\nregistries:\n  "${bed.registry}": { plainHttp: true }\n`,
    );
    manifests = join(node.dir, 'config', 'usernode', 'manifests');
    await mkdir(manifests, { recursive: true });
    await writeFile(join(manifests, 'one.yaml'), manifest('one'));
    await writeFile(join(manifests, 'two.yaml'), manifest('two'));
    agent = node.start();
    await agent.ready();

    promPort = await freePort();
    const dir = join(node.dir, 'prometheus');
    await mkdir(dir, { recursive: true });
    // The shipped jobs, pointed at this node, every second.
    const shipped = readFileSync(join(repoRoot, 'manifests', 'prometheus', 'scrape-config.yaml'), 'utf8');
    const jobs = (parse(shipped) as { scrape_configs: ScrapeJob[] }).scrape_configs;
    assert.deepEqual(jobs.map((j) => j.job_name), ['usernode', 'usernode-cadvisor', 'usernode-kubelet', 'usernode-kubelet-cadvisor']);
    for (const j of jobs) {
      const kubelet = j.job_name.startsWith('usernode-kubelet');
      j.static_configs = [{ targets: [`127.0.0.1:${kubelet ? kubeletPort : metricsPort}`] }];
      if (kubelet) {
        delete j.authorization;
        j.tls_config = { ca_file: join(node.dir, 'data', 'usernode', 'pki', 'kubelet.crt'), cert_file: client.cert, key_file: client.key };
      }
    }
    const config = join(dir, 'prometheus.yml');
    await writeFile(config, stringify({ global: { scrape_interval: '1s', scrape_timeout: '1s', evaluation_interval: '1s' }, scrape_configs: jobs }));
    const checked = await exec(prometheusTool('promtool'), ['check', 'config', config]);
    assert.equal(checked.code, 0, `promtool check config:\n${checked.stdout}${checked.stderr}`);
    prometheus = spawn(
      prometheusBin,
      [`--config.file=${config}`, `--storage.tsdb.path=${join(dir, 'data')}`, `--web.listen-address=127.0.0.1:${promPort}`, '--web.enable-lifecycle'],
      { stdio: ['ignore', 'pipe', 'pipe'] },
    );
    prometheus.stdout?.on('data', (d: Buffer) => (prometheusLog += d.toString()));
    prometheus.stderr?.on('data', (d: Buffer) => (prometheusLog += d.toString()));
    await eventually('Prometheus ready', async () => ((await fetch(`http://127.0.0.1:${promPort}/-/ready`)).status === 200 ? true : undefined), 30000).catch((e: unknown) => {
      throw new Error(`${(e as Error).message}\n${prometheusLog}`);
    });
  });

  after(async () => {
    prometheus?.kill('SIGTERM');
    agent?.child.kill('SIGTERM');
    await node?.destroy();
  });

  it('runs the static pods; the exposition on metricsAddress passes promtool check metrics', async () => {
    await eventually('both static pods running', async () => (valueIn(await scrape('/metrics'), 'kubelet_running_pods') === 2 ? true : undefined), 90000);
    const text = await scrape('/metrics');
    const r = await exec(prometheusTool('promtool'), ['check', 'metrics'], { input: text });
    assert.equal(r.code, 0, `promtool check metrics:\n${r.stdout}${r.stderr}`);
    assert.equal((r.stdout + r.stderr).trim(), '');
    for (const name of ['kubelet_node_name', 'kubelet_running_containers', 'kubelet_pod_start_duration_seconds_count', 'kubelet_runtime_operations_total', 'usernode_cri_operations_total', 'usernode_build_info', 'process_cpu_seconds_total', 'usernode_runtime_process_cpu_seconds_total', 'usernode_image_pull_bytes_total']) {
      assert.match(text, new RegExp(`^${name}[{ ]`, 'm'), `${name} is missing`);
    }
    assert.equal(valueIn(text, 'kubelet_running_containers{container_state="running"}'), 2);
    assert.equal(valueIn(text, 'kubelet_pod_start_duration_seconds_count'), 2, 'each pod timed once');
    assert.ok(valueIn(text, 'usernode_image_pull_bytes_total')! > 0, 'the busybox pull came over the network');
  });

  it('says what only a rootless node knows: limits it cannot enforce, the snapshotter, userspace network bytes, port forwards', async () => {
    const text = await scrape('/metrics');
    // crictl info shows the runtime's verbose info beside the status, each value parsed from JSON when it is JSON.
    const info = JSON.parse((await node.crictl(['info'])).stdout) as Record<string, unknown>;
    const field = <T>(k: string): T => (typeof info[k] === 'string' ? JSON.parse(info[k]) : info[k]) as T;
    const rootless = field<{ unenforced?: string[] }>('rootless');
    const snapshotter = field<{ snapshotter?: string }>('snapshotter').snapshotter;
    assert.ok(rootless && snapshotter, JSON.stringify(info));
    for (const limit of ['cpu', 'memory', 'pids']) {
      assert.equal(valueIn(text, `usernode_unenforced_limit{limit="${limit}"}`), rootless.unenforced?.includes(limit) ? 1 : 0, limit);
    }
    assert.equal(valueIn(text, `usernode_snapshotter_info{snapshotter="${snapshotter}"}`), 1);
    assert.ok(valueIn(text, 'usernode_userspace_network_receive_bytes_total')! > 0, 'the image pull came in through slirp4netns');
    assert.ok(valueIn(text, 'usernode_port_forwards{protocol="tcp"}')! >= 1, 'the streaming server is forwarded from the host');
  });

  it('no pod id is a label outside the cadvisor series', async () => {
    const pods = JSON.parse((await node.crictl(['pods', '-o', 'json'])).stdout) as { items: Array<{ id: string; metadata: { name: string } }> };
    assert.ok(pods.items.length >= 2);
    const text = await scrape('/metrics');
    for (const p of pods.items) {
      assert.ok(!text.includes(p.id), `the pod id ${p.id} is in /metrics`);
      assert.ok(!text.includes(p.metadata.name), `the pod name ${p.metadata.name} is in /metrics`);
    }
  });

  it('Prometheus scraping the agent answers kubelet_running_pods and container_cpu_usage_seconds_total for a running container', async () => {
    await eventually(
      'kubelet_running_pods = 2 in Prometheus',
      async () => {
        const r = await query('kubelet_running_pods{job="usernode"}');
        return r.length === 1 && r[0]!.value[1] === '2' ? true : undefined;
      },
      30000,
    );
    const cpu = await eventually(
      "the container's CPU series in Prometheus",
      async () => {
        const r = await query('container_cpu_usage_seconds_total{job="usernode-cadvisor",namespace="metrics-test",container="app"}');
        return r.length === 2 ? r : undefined;
      },
      30000,
    );
    const labels = cpu.map((s) => s.metric);
    assert.deepEqual(labels.map((l) => l['pod']!.split('-')[0]).sort(), ['one', 'two'], 'static pods are named <name>-<node>');
    for (const l of labels) {
      assert.ok(l['id'] && l['name'] === 'app' && l['image'] === busybox, JSON.stringify(l));
    }
    for (const name of ['container_memory_working_set_bytes', 'container_memory_rss', 'container_network_receive_bytes_total', 'container_network_transmit_bytes_total', 'container_fs_usage_bytes', 'container_start_time_seconds']) {
      const r = await query(`${name}{job="usernode-cadvisor",namespace="metrics-test"}`);
      assert.ok(r.length >= 2, `${name}: ${JSON.stringify(r)}`);
      for (const s of r) {
        assert.match(s.metric['pod'] ?? '', /^(one|two)-/, `${name}: ${JSON.stringify(s.metric)}`);
        // The pod's own series (its network) have an empty container label, which Prometheus drops.
        assert.equal(s.metric['container'], name.startsWith('container_network') ? undefined : 'app', `${name}: ${JSON.stringify(s.metric)}`);
      }
    }
  });

  it('the kubelet API serves the same families over TLS to an authenticated scraper', async () => {
    await eventually(
      'both kubelet API jobs up, with the pods in them',
      async () => {
        const up = await query('up{job=~"usernode-kubelet.*"}');
        const pods = await query('kubelet_running_pods{job="usernode-kubelet"}');
        const cpu = await query('container_cpu_usage_seconds_total{job="usernode-kubelet-cadvisor",namespace="metrics-test",container="app"}');
        return up.length === 2 && up.every((s) => s.value[1] === '1') && pods[0]?.value[1] === '2' && cpu.length === 2 ? true : undefined;
      },
      30000,
    ).catch(async (e: unknown) => {
      throw new Error(`${(e as Error).message}: ${JSON.stringify(await fetch(`http://127.0.0.1:${promPort}/api/v1/targets`).then((r) => r.json()))}`);
    });
    const serverCA = join(node.dir, 'data', 'usernode', 'pki', 'kubelet.crt');
    for (const path of ['/metrics', '/metrics/cadvisor']) {
      const anonymous = await kubeletGet(`https://127.0.0.1:${kubeletPort}${path}`, { serverCA });
      assert.equal(anonymous.status, 401, `${path}: the kubelet API lets no unauthenticated scraper in`);
      assert.doesNotMatch(anonymous.body, /kubelet_|container_/);
    }
  });

  it('a scrape storm costs the runtime one ListPodSandboxMetrics a second at most', async () => {
    const listed = async (): Promise<number> =>
      (await scrape('/metrics'))
        .split('\n')
        .filter((l) => l.startsWith('usernode_cri_operations_total{') && l.includes('method="ListPodSandboxMetrics"'))
        .reduce((sum, l) => sum + Number(l.split(' ')[1]), 0);
    const before = await listed();
    const t0 = Date.now();
    for (let round = 0; round < 5; round++) {
      const bodies = await Promise.all(Array.from({ length: 20 }, () => scrape('/metrics/cadvisor')));
      for (const b of bodies) assert.match(b, /^container_cpu_usage_seconds_total\{/m);
    }
    const seconds = (Date.now() - t0) / 1000;
    const made = (await listed()) - before;
    // 100 scrapes here, and Prometheus' own of both ports meanwhile, share one render a second.
    assert.ok(made <= Math.ceil(seconds) + 2, `${made} ListPodSandboxMetrics calls in ${seconds} s for 100 scrapes`);
  });

  it('counters grow as CRI calls are made; a removed pod leaves the cadvisor series and the running count', async () => {
    const total = async (q: string): Promise<number> => Number((await query(`sum(${q})`))[0]?.value[1] ?? 'NaN');
    const kubeletOps = await total('kubelet_runtime_operations_total{job="usernode"}');
    const runtimeOps = await total('usernode_cri_operations_total{job="usernode"}');
    const runs = await total('kubelet_runtime_operations_total{job="usernode",operation_type="run_podsandbox"}');
    assert.ok(kubeletOps > 0 && runtimeOps > 0);
    await writeFile(join(manifests, 'three.yaml'), manifest('three'));
    await eventually(
      'three pods in Prometheus',
      async () => ((await query('kubelet_running_pods{job="usernode"}'))[0]?.value[1] === '3' ? true : undefined),
      60000,
    );
    await eventually(
      'counters past their earlier values',
      async () =>
        (await total('kubelet_runtime_operations_total{job="usernode"}')) > kubeletOps &&
        (await total('usernode_cri_operations_total{job="usernode"}')) > runtimeOps &&
        (await total('kubelet_runtime_operations_total{job="usernode",operation_type="run_podsandbox"}')) === runs + 1
          ? true
          : undefined,
      30000,
    );
    await rm(join(manifests, 'one.yaml'));
    await eventually('pod one gone from /metrics/cadvisor', async () => (/pod="one-/.test(await scrape('/metrics/cadvisor')) ? undefined : true), 60000);
    assert.match(await scrape('/metrics/cadvisor'), /pod="three-/);
    await eventually('two pods running again', async () => (valueIn(await scrape('/metrics'), 'kubelet_running_pods') === 2 ? true : undefined), 30000);
  });
});
