import { spawn, type ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { openSync, closeSync, readFileSync } from 'node:fs';
import { mkdir, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { request } from 'node:https';
import { networkInterfaces } from 'node:os';
import { join } from 'node:path';

import { exec, freePort, repoRoot, sleep } from './agent.js';

// A real Kubernetes control plane for the test bed: etcd, kube-apiserver,
// kube-controller-manager and kube-scheduler (built by scripts/build-control-plane.sh),
// started as the user running the tests, on loopback, on free ports, with
// certificates made by the openssl CLI. The apiserver runs with the Node authorizer
// and RBAC and the NodeRestriction admission plugin, as a real cluster does, so a
// node that works here works with a real cluster's identity rules.
// Two releases of the control plane are built: the newest (versions.json
// "kubernetes", the default) and the oldest the node half supports
// ("kubernetesOldest": kube-apiserver, kube-controller-manager and kube-scheduler
// only; etcd, kubectl and the kubelet stay the newest), for the version skew tests.
//
// Layout of the folder (everything the bed makes is in it; stop() removes it):
//   pki/        ca.{crt,key} (cluster CA = client CA = CSR signer), sa.{key,pub},
//               etcd, apiserver, kubelet-client, admin, controller-manager, scheduler
//   *.kubeconfig  admin, controller-manager, scheduler, and one per node asked for
//   etcd/       etcd's data
//   logs/       one file per component

export interface ControlPlane {
  /** https://127.0.0.1:PORT */
  readonly server: string;
  /**
   * With reachableFromNodeNamespace: the host's own address on its default
   * route and https://THAT:PORT, which a kubelet inside a node namespace dials
   * (slirp4netns forwards to the host's addresses, never to its loopback).
   */
  readonly hostIP: string | undefined;
  readonly hostServer: string | undefined;
  /** The cluster CA: signs the serving and client certificates, and the CSRs the controller-manager approves. */
  readonly caFile: string;
  /** A kubeconfig for a cluster admin (group system:masters). */
  readonly adminKubeconfig: string;
  /** Which of the two built releases runs, and the apiserver's own /version gitVersion (e.g. v1.34.4). */
  readonly release: ControlPlaneRelease;
  readonly version: string;
  /** The folder that holds everything the bed made. */
  readonly dir: string;
  /** The process ids of etcd and the components, for leak checks. */
  readonly pids: readonly number[];
  /** How long each start-up step took, in order, in ms (for the test's log). */
  readonly startSteps: ReadonlyArray<{ step: string; ms: number }>;
  /** A kubeconfig with a client certificate CN=system:node:NAME, O=system:nodes, signed by the cluster CA. */
  nodeKubeconfig(nodeName: string, opts?: { server?: string }): Promise<string>;
  /** Runs the bed's kubectl (as the admin unless another kubeconfig is given). */
  kubectl(args: readonly string[], opts?: { kubeconfig?: string; input?: string; timeoutMs?: number }): Promise<KubectlResult>;
  /** The tail of every component's log, for failure messages. */
  logs(): Promise<string>;
  /** Kills every process the bed started and removes its folder. Safe to call twice. */
  stop(): Promise<void>;
}

export interface KubectlResult {
  stdout: string;
  stderr: string;
  code: number | null;
}

type ControlPlaneTool =
  | 'USERNODE_ETCD'
  | 'USERNODE_ETCDCTL'
  | 'USERNODE_KUBELET'
  | 'USERNODE_KUBE_APISERVER'
  | 'USERNODE_KUBE_CONTROLLER_MANAGER'
  | 'USERNODE_KUBE_SCHEDULER'
  | 'USERNODE_KUBECTL'
  | 'USERNODE_KUBE_APISERVER_OLDEST'
  | 'USERNODE_KUBE_CONTROLLER_MANAGER_OLDEST'
  | 'USERNODE_KUBE_SCHEDULER_OLDEST';

/** newest: versions.json "kubernetes"; oldest: "kubernetesOldest" (the oldest kube-apiserver the node half supports). */
export type ControlPlaneRelease = 'newest' | 'oldest';

/** The release versions.json names for each. */
export function releaseVersion(release: ControlPlaneRelease): string {
  const v = JSON.parse(readFileSync(join(repoRoot, 'versions.json'), 'utf8')) as { kubernetes: string; kubernetesOldest: string };
  return release === 'newest' ? v.kubernetes : v.kubernetesOldest;
}

/** A control plane binary scripts/test.sh exported (scripts/build-control-plane.sh); missing is a failure, never a skip. */
export function requiredControlPlaneTool(envName: ControlPlaneTool): string {
  const p = process.env[envName];
  if (!p) throw new Error(`${envName} is not set: run the tests with "npm test" (scripts/test.sh), which builds the control plane with scripts/build-control-plane.sh`);
  return p;
}

/** The user the apiserver calls kubelet APIs as (its --kubelet-client-certificate); manifests/cluster binds it to system:kubelet-api-admin. */
export const kubeletClientUser = 'kube-apiserver-kubelet-client';

/** The range Service cluster IPs come from; apart from the node's pod range 10.88.0.0/16. */
export const serviceClusterIpRange = '10.96.0.0/16';

const logTailLines = 40;

class Component {
  readonly exited: Promise<void>;
  exitedWith: string | undefined;

  constructor(
    readonly name: string,
    readonly child: ChildProcess,
  ) {
    this.exited = new Promise((resolve) => {
      child.on('exit', (code, signal) => {
        this.exitedWith = signal ? `signal ${signal}` : `code ${code}`;
        resolve();
      });
      // A binary that cannot be started emits 'error' and no 'exit'.
      child.on('error', (e) => {
        this.exitedWith ??= `an error: ${e.message}`;
        resolve();
      });
    });
  }
}

/** Starts etcd, kube-apiserver, kube-controller-manager and kube-scheduler and waits until pods can be made. */
export async function startControlPlane(opts: { dir?: string; reachableFromNodeNamespace?: boolean; release?: ControlPlaneRelease } = {}): Promise<ControlPlane> {
  const release = opts.release ?? 'newest';
  const suffix = release === 'oldest' ? '_OLDEST' : '';
  const tools = {
    etcd: requiredControlPlaneTool('USERNODE_ETCD'),
    apiserver: requiredControlPlaneTool(`USERNODE_KUBE_APISERVER${suffix}`),
    controllerManager: requiredControlPlaneTool(`USERNODE_KUBE_CONTROLLER_MANAGER${suffix}`),
    scheduler: requiredControlPlaneTool(`USERNODE_KUBE_SCHEDULER${suffix}`),
    kubectl: requiredControlPlaneTool('USERNODE_KUBECTL'),
  };
  for (let attempt = 1; ; attempt++) {
    const dir = opts.dir ?? (await mkdtemp('/tmp/ucp-'));
    await mkdir(dir, { recursive: true, mode: 0o700 });
    const bed = new Bed(dir, tools.kubectl, opts.reachableFromNodeNamespace ? defaultRouteIPv4() : undefined, release);
    try {
      await bed.start(tools);
      return bed;
    } catch (e: unknown) {
      const logs = await bed.logs().catch(() => '');
      await bed.stop();
      // A port freePort() found can be taken by another test's process before the component
      // binds it (several test beds share this loopback): start again on other ports.
      if (attempt < 3 && /address already in use/.test(logs)) continue;
      throw new Error(`the control plane did not start: ${e instanceof Error ? e.message : String(e)}\n${logs}`);
    }
  }
}

class Bed implements ControlPlane {
  server = '';
  version = '';
  readonly startSteps: Array<{ step: string; ms: number }> = [];
  private stepStarted = Date.now();
  private readonly components: Component[] = [];
  private stopped = false;
  private readonly pki: string;
  private readonly killOnExit = (): void => {
    for (const c of this.components) if (c.exitedWith === undefined) c.child.kill('SIGKILL');
  };

  constructor(
    readonly dir: string,
    private readonly kubectlPath: string,
    readonly hostIP: string | undefined,
    readonly release: ControlPlaneRelease,
  ) {
    this.pki = join(dir, 'pki');
  }

  get hostServer(): string | undefined {
    return this.hostIP === undefined ? undefined : this.server.replace('127.0.0.1', this.hostIP);
  }

  get caFile(): string {
    return join(this.pki, 'ca.crt');
  }

  get pids(): number[] {
    return this.components.map((c) => c.child.pid).filter((p): p is number => p !== undefined);
  }

  get adminKubeconfig(): string {
    return join(this.dir, 'admin.kubeconfig');
  }

  async start(tools: { etcd: string; apiserver: string; controllerManager: string; scheduler: string }): Promise<void> {
    await mkdir(this.pki, { mode: 0o700 });
    await mkdir(join(this.dir, 'logs'));
    // A test that fails before stop() must not leave a control plane running.
    process.on('exit', this.killOnExit);

    const [etcdClient, etcdPeer, apiPort, cmPort, schedPort] = await distinctFreePorts(5);
    this.server = `https://127.0.0.1:${apiPort}`;
    const pki = (f: string): string => join(this.pki, f);

    await openssl(['req', '-x509', '-new', '-nodes', ...ecKey(pki('ca.key')), '-subj', '/CN=usernode-test-ca', '-days', '2', '-out', pki('ca.crt')]);
    await Promise.all([
      openssl(['genpkey', '-algorithm', 'EC', '-pkeyopt', 'ec_paramgen_curve:P-256', '-out', pki('sa.key')]).then(() =>
        openssl(['pkey', '-in', pki('sa.key'), '-pubout', '-out', pki('sa.pub')]),
      ),
      this.issue('etcd', '/CN=etcd', 'serverAuth,clientAuth', 'IP:127.0.0.1,DNS:localhost'),
      this.issue('apiserver', '/CN=kube-apiserver', 'serverAuth', `IP:127.0.0.1,DNS:localhost,DNS:kubernetes,DNS:kubernetes.default,DNS:kubernetes.default.svc,IP:${firstServiceIp()}${this.hostIP ? `,IP:${this.hostIP}` : ''}`),
      this.issue('kubelet-client', `/CN=${kubeletClientUser}`, 'clientAuth'),
      this.issue('admin', '/O=system:masters/CN=usernode-test-admin', 'clientAuth'),
      this.issue('controller-manager', '/CN=system:kube-controller-manager', 'clientAuth'),
      this.issue('scheduler', '/CN=system:kube-scheduler', 'clientAuth'),
    ]);
    this.step('certificates (openssl)');
    await this.writeKubeconfig(this.adminKubeconfig, 'admin');
    const cmKubeconfig = join(this.dir, 'controller-manager.kubeconfig');
    const schedKubeconfig = join(this.dir, 'scheduler.kubeconfig');
    await this.writeKubeconfig(cmKubeconfig, 'controller-manager');
    await this.writeKubeconfig(schedKubeconfig, 'scheduler');

    const etcdUrl = `https://127.0.0.1:${etcdClient}`;
    const etcdPeerUrl = `https://127.0.0.1:${etcdPeer}`;
    this.spawn('etcd', tools.etcd, [
      '--name=bed',
      `--data-dir=${join(this.dir, 'etcd')}`,
      `--listen-client-urls=${etcdUrl}`,
      `--advertise-client-urls=${etcdUrl}`,
      `--listen-peer-urls=${etcdPeerUrl}`,
      `--initial-advertise-peer-urls=${etcdPeerUrl}`,
      `--initial-cluster=bed=${etcdPeerUrl}`,
      // Its data lives only as long as the test: no need to wait for the disk.
      '--unsafe-no-fsync',
      // TLS with client certificates on both ports: the ports are on a loopback other
      // users share, and whoever reaches etcd owns the cluster.
      '--client-cert-auth',
      `--trusted-ca-file=${pki('ca.crt')}`,
      `--cert-file=${pki('etcd.crt')}`,
      `--key-file=${pki('etcd.key')}`,
      '--peer-client-cert-auth',
      `--peer-trusted-ca-file=${pki('ca.crt')}`,
      `--peer-cert-file=${pki('etcd.crt')}`,
      `--peer-key-file=${pki('etcd.key')}`,
    ]);

    this.spawn('kube-apiserver', tools.apiserver, [
      // Reachable from a node namespace: every address (TLS, client certificates, no anonymous access), else loopback only.
      `--bind-address=${this.hostIP ? '0.0.0.0' : '127.0.0.1'}`,
      ...(this.hostIP ? [`--advertise-address=${this.hostIP}`] : []),
      `--secure-port=${apiPort}`,
      `--etcd-servers=${etcdUrl}`,
      `--etcd-cafile=${pki('ca.crt')}`,
      `--etcd-certfile=${pki('etcd.crt')}`,
      `--etcd-keyfile=${pki('etcd.key')}`,
      `--tls-cert-file=${pki('apiserver.crt')}`,
      `--tls-private-key-file=${pki('apiserver.key')}`,
      `--client-ca-file=${pki('ca.crt')}`,
      '--authorization-mode=Node,RBAC',
      '--enable-admission-plugins=NodeRestriction',
      // TLS bootstrap (manifests/cluster): a bootstrap token authenticates as system:bootstrappers.
      '--enable-bootstrap-token-auth',
      '--anonymous-auth=false',
      `--service-account-key-file=${pki('sa.pub')}`,
      `--service-account-signing-key-file=${pki('sa.key')}`,
      '--service-account-issuer=https://kubernetes.default.svc.cluster.local',
      `--service-cluster-ip-range=${serviceClusterIpRange}`,
      // The apiserver's own calls to kubelet APIs (logs, exec, port-forward): a client
      // certificate the kubelet API checks against the cluster CA, authorized through
      // the system:kubelet-api-admin binding in manifests/cluster. Kubelets (and usernode)
      // serve with self-signed certificates, so no --kubelet-certificate-authority.
      `--kubelet-client-certificate=${pki('kubelet-client.crt')}`,
      `--kubelet-client-key=${pki('kubelet-client.key')}`,
      // usernode reports InternalIP 127.0.0.1 and serves its kubelet API there.
      '--kubelet-preferred-address-types=InternalIP,Hostname',
      '--profiling=false',
    ]);
    // Not before /readyz: until the apiserver has made its bootstrap RBAC roles the
    // controller-manager is refused its own start-up reads, and exits.
    await this.until('kube-apiserver /readyz', async () => ((await this.get('/readyz')).body === 'ok' ? true : undefined), 60000);
    this.step('etcd and kube-apiserver ready');
    // The binary that runs is the release asked for (a stale cache or a wrong variable would test the wrong one).
    this.version = (JSON.parse((await this.get('/version')).body) as { gitVersion: string }).gitVersion;
    const want = releaseVersion(this.release);
    if (this.version !== want) throw new Error(`kube-apiserver ${tools.apiserver} says it is ${this.version}, not ${want} (versions.json, the ${this.release} release)`);
    // What a cluster admin applies to let a usernode join, applied as the docs say, while
    // the controller-manager and the scheduler start.
    const rbac = this.kubectl(['apply', '-f', join(repoRoot, 'manifests', 'cluster', 'rbac')]);

    this.spawn('kube-controller-manager', tools.controllerManager, [
      `--kubeconfig=${cmKubeconfig}`,
      // Its port serves /healthz and /metrics. No --authentication-kubeconfig: nothing here
      // calls it as a user, and delegated authentication would watch for request-header
      // CAs this apiserver does not have, filling the log with their absence.
      '--bind-address=127.0.0.1',
      `--secure-port=${cmPort}`,
      // Leader election as a real cluster runs it: a single candidate takes the lease at once.
      '--leader-elect=true',
      '--use-service-account-credentials',
      `--service-account-private-key-file=${pki('sa.key')}`,
      `--root-ca-file=${pki('ca.crt')}`,
      // Signs approved CSRs (kubernetes.io/kube-apiserver-client-kubelet and the others) with the cluster CA.
      `--cluster-signing-cert-file=${pki('ca.crt')}`,
      `--cluster-signing-key-file=${pki('ca.key')}`,
      // The bootstrap-token controllers, off by default, that a TLS-bootstrapping cluster runs.
      '--controllers=*,bootstrapsigner,tokencleaner',
      `--service-cluster-ip-range=${serviceClusterIpRange}`,
      '--profiling=false',
    ]);

    const schedConfig = join(this.dir, 'scheduler.yaml');
    await writeFile(
      schedConfig,
      [
        'apiVersion: kubescheduler.config.k8s.io/v1',
        'kind: KubeSchedulerConfiguration',
        'clientConnection:',
        `  kubeconfig: ${JSON.stringify(schedKubeconfig)}`,
        'leaderElection:',
        '  leaderElect: true',
        '',
      ].join('\n'),
    );
    this.spawn('kube-scheduler', tools.scheduler, [
      `--config=${schedConfig}`,
      '--bind-address=127.0.0.1',
      `--secure-port=${schedPort}`,
    ]);

    const applied = await rbac;
    if (applied.code !== 0) throw new Error(`kubectl apply -f manifests/cluster/rbac: ${applied.stderr}`);
    // Pods cannot be made in a namespace before the controller-manager gives it its default ServiceAccount.
    await this.until('the default ServiceAccount in namespace default', async () =>
      (await this.get('/api/v1/namespaces/default/serviceaccounts/default')).status === 200 ? true : undefined,
    );
    this.step('kube-controller-manager: the default ServiceAccount');
    await this.until('kube-scheduler to lead (its Lease kube-system/kube-scheduler)', async () =>
      (await this.get('/apis/coordination.k8s.io/v1/namespaces/kube-system/leases/kube-scheduler')).status === 200 ? true : undefined,
    );
    this.step('kube-scheduler leading');
  }

  private step(step: string): void {
    const now = Date.now();
    this.startSteps.push({ step, ms: now - this.stepStarted });
    this.stepStarted = now;
  }

  /** A key and a certificate signed by the cluster CA, made with the commands docs/joining-a-cluster.md gives. */
  private async issue(name: string, subject: string, extendedKeyUsage: string, subjectAltName?: string): Promise<void> {
    const base = join(this.pki, name);
    const ext = [`basicConstraints=critical,CA:FALSE`, `keyUsage=critical,digitalSignature,keyEncipherment`, `extendedKeyUsage=${extendedKeyUsage}`];
    if (subjectAltName) ext.push(`subjectAltName=${subjectAltName}`);
    await writeFile(`${base}.ext`, ext.join('\n') + '\n');
    await openssl(['genpkey', '-algorithm', 'EC', '-pkeyopt', 'ec_paramgen_curve:P-256', '-out', `${base}.key`]);
    await openssl(['req', '-new', '-key', `${base}.key`, '-subj', subject, '-out', `${base}.csr`]);
    await openssl([
      'x509', '-req', '-in', `${base}.csr`, '-CA', this.caFile, '-CAkey', join(this.pki, 'ca.key'),
      // A random serial: no serial file shared by calls running at once.
      '-set_serial', `0x${randomBytes(16).toString('hex')}`, '-days', '2', '-extfile', `${base}.ext`, '-out', `${base}.crt`,
    ]);
  }

  private async writeKubeconfig(path: string, pkiName: string, server = this.server): Promise<void> {
    const b64 = async (f: string): Promise<string> => (await readFile(f)).toString('base64');
    const user = pkiName;
    const yaml = [
      'apiVersion: v1',
      'kind: Config',
      'clusters:',
      '- name: bed',
      '  cluster:',
      `    server: ${server}`,
      `    certificate-authority-data: ${await b64(this.caFile)}`,
      'users:',
      `- name: ${user}`,
      '  user:',
      `    client-certificate-data: ${await b64(join(this.pki, `${pkiName}.crt`))}`,
      `    client-key-data: ${await b64(join(this.pki, `${pkiName}.key`))}`,
      'contexts:',
      '- name: bed',
      '  context:',
      '    cluster: bed',
      `    user: ${user}`,
      'current-context: bed',
      '',
    ].join('\n');
    await writeFile(path, yaml, { mode: 0o600 });
  }

  async nodeKubeconfig(nodeName: string, opts: { server?: string } = {}): Promise<string> {
    if (!/^[a-z0-9]([-a-z0-9.]*[a-z0-9])?$/.test(nodeName)) throw new Error(`nodeKubeconfig: node name ${JSON.stringify(nodeName)} is not a DNS subdomain`);
    const pkiName = `node-${nodeName}`;
    await this.issue(pkiName, `/O=system:nodes/CN=system:node:${nodeName}`, 'clientAuth');
    const path = join(this.dir, `node-${nodeName}.kubeconfig`);
    await this.writeKubeconfig(path, pkiName, opts.server);
    return path;
  }

  async kubectl(args: readonly string[], opts: { kubeconfig?: string; input?: string; timeoutMs?: number } = {}): Promise<KubectlResult> {
    const r = await exec(this.kubectlPath, [`--kubeconfig=${opts.kubeconfig ?? this.adminKubeconfig}`, ...args], {
      timeoutMs: opts.timeoutMs ?? 60000,
      ...(opts.input === undefined ? {} : { input: opts.input }),
    });
    return { stdout: r.stdout, stderr: r.stderr, code: r.code };
  }

  async logs(): Promise<string> {
    const parts: string[] = [];
    for (const c of this.components) {
      const text = await readFile(this.logFile(c.name), 'utf8').catch(() => '');
      const tail = text.trimEnd().split('\n').slice(-logTailLines).join('\n');
      const state = c.exitedWith === undefined ? 'running' : `exited with ${c.exitedWith}`;
      parts.push(`--- ${c.name} (${state}), the last ${logTailLines} lines of its log:\n${tail}`);
    }
    return parts.join('\n');
  }

  async stop(): Promise<void> {
    if (this.stopped) return;
    this.stopped = true;
    // In reverse: the apiserver goes before etcd, so it does not spend its grace period retrying etcd.
    for (const c of [...this.components].reverse()) {
      if (c.exitedWith !== undefined) continue;
      c.child.kill('SIGTERM');
      const timer = setTimeout(() => c.child.kill('SIGKILL'), 5000);
      await c.exited;
      clearTimeout(timer);
    }
    process.off('exit', this.killOnExit);
    await rm(this.dir, { recursive: true, force: true });
  }

  private logFile(name: string): string {
    return join(this.dir, 'logs', `${name}.log`);
  }

  private spawn(name: string, file: string, args: string[]): void {
    const fd = openSync(this.logFile(name), 'a');
    try {
      const child = spawn(file, args, { stdio: ['ignore', fd, fd] });
      this.components.push(new Component(name, child));
    } finally {
      closeSync(fd);
    }
  }

  /** Polls `f` until it gives a value; fails at once if a component died, naming it. */
  private async until<T>(what: string, f: () => Promise<T | undefined>, timeoutMs = 60000): Promise<T> {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const dead = this.components.find((c) => c.exitedWith !== undefined);
      if (dead) throw new Error(`${dead.name} exited (${dead.exitedWith}) while waiting for ${what}`);
      const v = await f().catch(() => undefined);
      if (v !== undefined) return v;
      if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
      await sleep(100);
    }
  }

  /** A GET as the admin, without spawning kubectl (the start-up polls run every 100 ms). */
  private async get(path: string): Promise<{ status: number; body: string }> {
    const [ca, cert, key] = await Promise.all([readFile(this.caFile), readFile(join(this.pki, 'admin.crt')), readFile(join(this.pki, 'admin.key'))]);
    return new Promise((resolve, reject) => {
      const req = request(`${this.server}${path}`, { ca, cert, key, timeout: 5000 }, (res) => {
        let body = '';
        res.setEncoding('utf8');
        res.on('data', (d: string) => (body += d));
        res.on('end', () => resolve({ status: res.statusCode ?? 0, body }));
        res.on('error', reject);
      });
      req.on('timeout', () => req.destroy(new Error(`GET ${path}: timed out`)));
      req.on('error', reject);
      req.end();
    });
  }
}

function ecKey(keyOut: string): string[] {
  return ['-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256', '-keyout', keyOut];
}

async function openssl(args: string[]): Promise<void> {
  const r = await exec('openssl', args, { timeoutMs: 30000 });
  if (r.code !== 0) throw new Error(`openssl ${args.join(' ')}: ${r.stderr.trim() || `exit ${r.code ?? r.signal}`}`);
}

/** The first address of the Service range: the apiserver's `kubernetes` Service, which its certificate names. */
function firstServiceIp(): string {
  const [base] = serviceClusterIpRange.split('/');
  const octets = base!.split('.').map(Number);
  octets[3] = octets[3]! + 1;
  return octets.join('.');
}

async function distinctFreePorts(n: number): Promise<number[]> {
  const ports = new Set<number>();
  while (ports.size < n) ports.add(await freePort());
  return [...ports];
}

/** The IPv4 address of the interface the host's default route leaves by. */
function defaultRouteIPv4(): string {
  const rows = readFileSync('/proc/net/route', 'utf8').split('\n').slice(1);
  const iface = rows.map((r) => r.trim().split(/\s+/)).find((f) => f[1] === '00000000')?.[0];
  const addr = iface ? networkInterfaces()[iface]?.find((a) => a.family === 'IPv4' && !a.internal)?.address : undefined;
  if (!addr) throw new Error('the host has no default route with an IPv4 address: a node namespace cannot reach the apiserver');
  return addr;
}
