import assert from 'node:assert/strict';
import { mkdir, mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';

import { parse } from 'yaml';

import { loadConfig } from '../../cmd/agent/config.js';
import { updateRuntimeConfig } from '../../pkg/cri/runtime_config_update.js';
import type { CriContext } from '../../pkg/cri/context.js';
import { isDomainError } from '../../pkg/errdefs/errors.js';
import { silentLogger } from '../../pkg/log/logger.js';
import { type KubeletModeSettings, kubeletConfigurationYaml, kubeletFlags } from '../../pkg/node/kubelet_config.js';
import { KubeletSupervisor } from '../../pkg/node/kubelet_supervisor.js';

// Kubelet mode's pure parts: the flags, the KubeletConfiguration it writes,
// the supervisor's restart and stop (on a tiny Node script standing in for
// kubelet), and the CRI call kubelet makes once the Node has a pod CIDR.

let root: string;
let env: NodeJS.ProcessEnv;

before(async () => {
  root = await mkdtemp(join(tmpdir(), 'usernode-kubelet-mode-'));
  await mkdir(join(root, 'run'), { recursive: true });
  env = { HOME: join(root, 'home'), XDG_RUNTIME_DIR: join(root, 'run'), XDG_DATA_HOME: join(root, 'data'), XDG_CONFIG_HOME: join(root, 'config'), PATH: '/usr/bin:/bin' };
});

after(async () => {
  await rm(root, { recursive: true, force: true });
});

describe('usernode run --kubelet', () => {
  test('takes the kubelet path (made absolute) with --kubeconfig', () => {
    const c = loadConfig({ kubelet: 'bin/kubelet', kubeconfig: '/etc/node.kubeconfig', nodeName: 'n1' }, env);
    assert.equal(c.cluster.kubelet, join(process.cwd(), 'bin/kubelet'));
    assert.equal(c.cluster.kubeconfig, '/etc/node.kubeconfig');
  });

  test('without --kubeconfig is refused, naming --kubelet', () => {
    assert.throws(
      () => loadConfig({ kubelet: '/usr/bin/kubelet' }, env),
      (e: unknown) => isDomainError(e) && e.code === 'InvalidArgument' && /^--kubelet must come with --kubeconfig/.test(e.message),
    );
  });

  test('off by default: the node half runs', () => {
    assert.equal(loadConfig({ kubeconfig: '/etc/node.kubeconfig' }, env).cluster.kubelet, undefined);
  });
});

const settings: KubeletModeSettings = {
  kubeconfig: '/home/u/node.kubeconfig',
  nodeName: 'n1',
  nodeIP: '192.0.2.2',
  criSocket: '/run/user/1000/usernode/cri.sock',
  port: 10250,
  clientCAFile: '/home/u/ca.crt',
  tlsCertFile: undefined,
  tlsKeyFile: undefined,
  anonymousAuth: false,
  staticPodPath: '/home/u/.config/usernode/manifests',
  maxPods: 110,
  nodeLabels: { 'usernode.io/mode': 'kubelet' },
  taints: [{ key: 'rootless', effect: 'NoSchedule' }],
  configPath: '/home/u/.local/share/usernode/kubelet/config.yaml',
  rootDir: '/var/lib/kubelet',
};

describe('the KubeletConfiguration and flags', () => {
  test('a rootless kubelet on the CRI socket, authenticating and authorizing through the apiserver', () => {
    const k = parse(kubeletConfigurationYaml(settings)) as Record<string, unknown>;
    assert.equal(k.kind, 'KubeletConfiguration');
    assert.equal(k.apiVersion, 'kubelet.config.k8s.io/v1beta1');
    assert.deepEqual(k.featureGates, { KubeletInUserNamespace: true, PodAndContainerStatsFromCRI: true });
    assert.equal(k.containerRuntimeEndpoint, 'unix:///run/user/1000/usernode/cri.sock');
    assert.equal(k.imageServiceEndpoint, 'unix:///run/user/1000/usernode/cri.sock');
    assert.equal(k.cgroupDriver, 'cgroupfs');
    assert.equal(k.failSwapOn, false);
    assert.equal(k.failCgroupV1, false);
    assert.equal(k.cgroupsPerQOS, false);
    // An empty list, not an absent one: kubelet defaults an absent one to ["pods"] and then refuses it without QoS cgroups.
    assert.deepEqual(k.enforceNodeAllocatable, []);
    assert.equal(k.localStorageCapacityIsolation, true);
    assert.equal(k.readOnlyPort, 0);
    assert.equal(k.port, 10250);
    assert.deepEqual(k.authentication, { anonymous: { enabled: false }, webhook: { enabled: true, cacheTTL: '2m0s' }, x509: { clientCAFile: '/home/u/ca.crt' } });
    assert.equal((k.authorization as { mode: string }).mode, 'Webhook');
    assert.equal(k.staticPodPath, '/home/u/.config/usernode/manifests');
    assert.deepEqual(k.registerWithTaints, [{ key: 'rootless', effect: 'NoSchedule' }]);
  });

  test('the cluster DNS, when given, for ClusterFirst pods', () => {
    const k = parse(kubeletConfigurationYaml({ ...settings, clusterDNS: ['10.96.0.10'], clusterDomain: 'cluster.local' })) as Record<string, unknown>;
    assert.deepEqual(k.clusterDNS, ['10.96.0.10']);
    assert.equal(k.clusterDomain, 'cluster.local');
    assert.equal((parse(kubeletConfigurationYaml(settings)) as Record<string, unknown>).clusterDNS, undefined);
  });

  test('without a client CA the kubelet API takes tokens only', () => {
    const k = parse(kubeletConfigurationYaml({ ...settings, clientCAFile: undefined })) as { authentication: Record<string, unknown> };
    assert.equal(k.authentication.x509, undefined);
  });

  test('flags: what the file cannot say', () => {
    assert.deepEqual(kubeletFlags(settings), [
      '--config=/home/u/.local/share/usernode/kubelet/config.yaml',
      '--kubeconfig=/home/u/node.kubeconfig',
      '--hostname-override=n1',
      '--node-ip=192.0.2.2',
      '--root-dir=/var/lib/kubelet',
      '--cert-dir=/var/lib/kubelet/pki',
      '--node-labels=usernode.io/mode=kubelet',
      '--v=2',
    ]);
  });
});

describe('KubeletSupervisor', () => {
  test('starts kubelet again after it exits, with its output appended to the log, and stops it with SIGTERM', async () => {
    const logFile = join(root, 'kubelet.log');
    const counter = join(root, 'starts');
    // Exits at once the first two times, then runs until SIGTERM, which it logs.
    const script = `const fs=require('fs');const f=${JSON.stringify(counter)};const n=(fs.existsSync(f)?Number(fs.readFileSync(f,'utf8')):0)+1;fs.writeFileSync(f,String(n));console.log('start '+n);if(n<3)process.exit(1);process.on('SIGTERM',()=>{console.log('SIGTERM');process.exit(0)});setInterval(()=>{},1000);`;
    const pidFile = join(root, 'kubelet.pid');
    const s = new KubeletSupervisor({ argv: [process.execPath, '-e', script], env: process.env, logFile, pidFile, log: silentLogger, backoffMs: () => 10 });
    const stop = new AbortController();
    const done = s.run(stop.signal);
    const deadline = Date.now() + 10000;
    while (!(await readFile(logFile, 'utf8').catch(() => '')).includes('start 3')) {
      assert.ok(Date.now() < deadline, 'kubelet was not started a third time');
      await new Promise((r) => setTimeout(r, 20));
    }
    assert.equal(s.restarts, 2);
    assert.equal(Number(await readFile(pidFile, 'utf8')), s.pid, 'the running kubelet is in the pid file');
    stop.abort();
    await done;
    await assert.rejects(readFile(pidFile), { code: 'ENOENT' }, 'no pid file once stopped');
    assert.equal(await readFile(logFile, 'utf8'), 'start 1\nstart 2\nstart 3\nSIGTERM\n');
  });
});

describe('UpdateRuntimeConfig', () => {
  test("the node's pod CIDR is taken note of and the call succeeds", async () => {
    const lines: string[] = [];
    const ctx = { log: { ...silentLogger, info: (m: string) => lines.push(m) } } as unknown as CriContext;
    assert.deepEqual(await updateRuntimeConfig({ runtimeConfig: { networkConfig: { podCidr: '10.244.1.0/24' } } }, ctx), {});
    assert.deepEqual(await updateRuntimeConfig({ runtimeConfig: { networkConfig: { podCidr: '10.244.1.0/24' } } }, ctx), {});
    assert.equal(lines.length, 1, 'logged once per CIDR');
  });
});
