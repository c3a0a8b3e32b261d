import assert from 'node:assert/strict';
import { existsSync, readFileSync } from 'node:fs';
import { mkdir, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { createServer, type Server } from 'node:https';
import type { AddressInfo } from 'node:net';
import type { TLSSocket } from 'node:tls';
import { dirname, join } from 'node:path';
import { after, before, describe, it } from 'node:test';

import { eventually, exec, repoRoot } from '../lib/agent.js';
import { type ControlPlane, kubeletClientUser, requiredControlPlaneTool, startControlPlane } from '../lib/control_plane.js';

// The test bed's real control plane: etcd, kube-apiserver (Node and RBAC
// authorizers, NodeRestriction), kube-controller-manager and kube-scheduler, as
// the test user on loopback. What the node tests rely on is checked here: node
// identities, the controllers, both ways docs/joining-a-cluster.md gives to make a
// node's certificate, and the apiserver reaching a kubelet API on 127.0.0.1.

describe('the control plane test bed', () => {
  let cp: ControlPlane;
  let scratch: string;

  before(async () => {
    const started = Date.now();
    cp = await startControlPlane();
    console.log(`control plane started in ${Date.now() - started} ms (${cp.server}): ${cp.startSteps.map((s) => `${s.step} ${s.ms} ms`).join(', ')}`);
    scratch = await mkdtemp('/tmp/ucp-test-');
  });

  after(async () => {
    await cp?.stop();
    if (scratch) await rm(scratch, { recursive: true, force: true });
  });

  // docs/joining-a-cluster.md's shell blocks, run as written (each way in its own folder,
  // which is also its HOME, so ~/.config/usernode/kubeconfig lands there).
  const docs = readFileSync(join(repoRoot, 'docs', 'joining-a-cluster.md'), 'utf8');
  const shellBlocks = [...docs.matchAll(/```sh\n([\s\S]*?)```/g)].map((m) => m[1]!);
  const docBlock = (marker: string): string => {
    const found = shellBlocks.filter((b) => b.includes(marker));
    assert.equal(found.length, 1, `docs/joining-a-cluster.md has one sh block with ${JSON.stringify(marker)}`);
    return found[0]!;
  };
  /** Part 3's block, with the server filled in and without the final `usernode run` (other tests run nodes). */
  const nodeKubeconfigBlock = (): string =>
    docBlock('set-credentials node')
      .replace('https://SERVER:6443', cp.server)
      .split('\n')
      .filter((l) => !l.startsWith('usernode run'))
      .join('\n');
  const runDocs = async (way: string, blocks: string[]): Promise<string> => {
    const home = join(scratch, `docs-${way}`);
    await mkdir(home);
    const kubectlDir = dirname(requiredControlPlaneTool('USERNODE_KUBECTL'));
    const env = { ...process.env, HOME: home, KUBECONFIG: cp.adminKubeconfig, PATH: `${kubectlDir}:${process.env['PATH'] ?? ''}` };
    const r = await exec('bash', ['-c', ['set -euo pipefail', `cd ${home}`, ...blocks].join('\n')], { env });
    assert.equal(r.code, 0, `the docs' commands (way ${way}) failed:\n${r.stdout}\n${r.stderr}\n${await cp.logs()}`);
    return r.stdout;
  };

  const kubectl = async (args: string[], opts: { kubeconfig?: string; input?: string } = {}): Promise<string> => {
    const r = await cp.kubectl(args, opts);
    if (r.code !== 0) assert.fail(`kubectl ${args.join(' ')} exited ${r.code}: ${r.stderr}\n${await cp.logs()}`);
    return r.stdout;
  };
  const whoami = async (kubeconfig: string): Promise<{ username: string; groups: string[] }> =>
    (JSON.parse(await kubectl(['auth', 'whoami', '-o', 'json'], { kubeconfig })) as { status: { userInfo: { username: string; groups: string[] } } }).status.userInfo;
  const openssl = async (args: string[]): Promise<void> => {
    const r = await exec('openssl', args);
    assert.equal(r.code, 0, `openssl ${args.join(' ')}: ${r.stderr}`);
  };
  /** A node key and a CSR for it, as docs/joining-a-cluster.md makes them; returns the CSR's PEM. */
  const nodeKeyAndCsr = async (name: string): Promise<{ key: string; csrPem: string }> => {
    const key = join(scratch, `${name}.key`);
    const csr = join(scratch, `${name}.csr`);
    await openssl(['genpkey', '-algorithm', 'EC', '-pkeyopt', 'ec_paramgen_curve:P-256', '-out', key]);
    await openssl(['req', '-new', '-key', key, '-subj', `/O=system:nodes/CN=system:node:${name}`, '-out', csr]);
    return { key, csrPem: await readFile(csr, 'utf8') };
  };
  const csrObject = (name: string, csrPem: string): string =>
    JSON.stringify({
      apiVersion: 'certificates.k8s.io/v1',
      kind: 'CertificateSigningRequest',
      metadata: { name },
      spec: { request: Buffer.from(csrPem).toString('base64'), signerName: 'kubernetes.io/kube-apiserver-client-kubelet', usages: ['digital signature', 'client auth'] },
    });
  /** The certificate the controller-manager issued for CSR `name`, once it has. */
  const issuedCertificate = (name: string, kubeconfig = cp.adminKubeconfig): Promise<string> =>
    eventually(`CSR ${name} to be signed`, async () => {
      const cert = await kubectl(['get', 'csr', name, '-o', 'jsonpath={.status.certificate}'], { kubeconfig });
      return cert ? Buffer.from(cert, 'base64').toString() : undefined;
    });
  /** A kubeconfig with the given client key and certificate files, assembled with kubectl config as the docs do. */
  const assembleKubeconfig = async (name: string, user: string[]): Promise<string> => {
    const path = join(scratch, `${name}.kubeconfig`);
    const cfg = ['--kubeconfig', path];
    await kubectl(['config', ...cfg, 'set-cluster', 'bed', `--server=${cp.server}`, `--certificate-authority=${cp.caFile}`, '--embed-certs']);
    await kubectl(['config', ...cfg, 'set-credentials', name, ...user]);
    await kubectl(['config', ...cfg, 'set-context', 'bed', '--cluster=bed', `--user=${name}`]);
    await kubectl(['config', ...cfg, 'use-context', 'bed']);
    return path;
  };

  it('is ready, and /readyz says ok', async () => {
    assert.equal(await kubectl(['get', '--raw', '/readyz']), 'ok');
  });

  it("gives a node's kubeconfig the identity the Node authorizer admits", async () => {
    const kubeconfig = await cp.nodeKubeconfig('n1');
    const me = await whoami(kubeconfig);
    assert.equal(me.username, 'system:node:n1');
    assert.ok(me.groups.includes('system:nodes'), `groups: ${me.groups.join(', ')}`);
    const canI = (...args: string[]): Promise<string> => cp.kubectl(['auth', 'can-i', ...args], { kubeconfig }).then((r) => r.stdout.trim());
    assert.equal(await canI('create', 'nodes'), 'yes');
    // Refused by the Node authorizer, which names itself, not merely unbound in RBAC.
    assert.match(await canI('get', 'secrets', '--all-namespaces'), /^no - node: /);
    assert.match(await canI('get', 'secret/some-secret', '-n', 'default'), /^no - node: no relationship found/);
    assert.equal(await canI('create', 'leases', '-n', 'kube-node-lease'), 'yes');
  });

  it('runs the controller-manager and the scheduler: a Deployment gets a ReplicaSet and Pods, Pending with no node', async () => {
    await kubectl(['create', 'deployment', 'web', '--image=registry.invalid/web:1', '--replicas=2']);
    const rs = await eventually('the ReplicaSet of deployment web', async () => {
      const items = (JSON.parse(await kubectl(['get', 'replicasets', '-l', 'app=web', '-o', 'json'])) as { items: Array<{ metadata: { name: string; ownerReferences?: Array<{ kind: string; name: string }> } }> }).items;
      return items[0];
    });
    assert.deepEqual(rs.metadata.ownerReferences?.map((o) => `${o.kind}/${o.name}`), ['Deployment/web']);
    type Pod = { metadata: { name: string }; spec: { nodeName?: string }; status: { phase: string; conditions?: Array<{ type: string; status: string; reason?: string }> } };
    // The scheduler has looked at them: PodScheduled False, Unschedulable (there is no node).
    const pods = await eventually('two unschedulable pods', async () => {
      const items = (JSON.parse(await kubectl(['get', 'pods', '-l', 'app=web', '-o', 'json'])) as { items: Pod[] }).items;
      const unschedulable = items.filter((p) => p.status.conditions?.some((c) => c.type === 'PodScheduled' && c.status === 'False' && c.reason === 'Unschedulable'));
      return unschedulable.length === 2 ? items : undefined;
    });
    for (const p of pods) {
      assert.equal(p.status.phase, 'Pending', p.metadata.name);
      assert.equal(p.spec.nodeName, undefined, p.metadata.name);
    }
    const lease = JSON.parse(await kubectl(['get', 'lease', '-n', 'kube-system', 'kube-scheduler', '-o', 'json'])) as { spec: { holderIdentity?: string } };
    assert.ok(lease.spec.holderIdentity, 'the kube-scheduler lease has a holder');
    await kubectl(['delete', 'deployment', 'web', '--wait=false']);
  });

  it('signs a node certificate requested by CSR and approved by the admin (docs, way a)', async () => {
    const out = await runDocs('a', [
      'NODE=docs-a',
      docBlock('openssl genpkey'),
      docBlock('kubectl certificate approve'),
      docBlock('{.clusters[0].cluster.server}'),
      nodeKubeconfigBlock(),
    ]);
    assert.ok(out.includes(cp.server), `the server address the docs print:\n${out}`);
    assert.match(out, /Username\s+system:node:docs-a\n/);
    assert.match(out, /Groups\s+\[system:nodes system:authenticated\]/);
  });

  it('refuses a node certificate for a subject that is not a node, even approved', async () => {
    const key = join(scratch, 'not-a-node.key');
    await openssl(['genpkey', '-algorithm', 'EC', '-pkeyopt', 'ec_paramgen_curve:P-256', '-out', key]);
    await openssl(['req', '-new', '-key', key, '-subj', '/O=system:nodes/CN=not-a-node', '-out', `${key}.csr`]);
    await kubectl(['create', '-f', '-'], { input: csrObject('not-a-node', await readFile(`${key}.csr`, 'utf8')) });
    await kubectl(['certificate', 'approve', 'not-a-node']);
    const failed = await eventually('CSR not-a-node to be marked Failed', async () => {
      const csr = JSON.parse(await kubectl(['get', 'csr', 'not-a-node', '-o', 'json'])) as { status: { conditions?: Array<{ type: string; message?: string }>; certificate?: string } };
      return csr.status.conditions?.find((c) => c.type === 'Failed') ? csr : undefined;
    });
    assert.equal(failed.status.certificate, undefined);
  });

  it('signs a node certificate from the cluster CA with openssl (docs, way b)', async () => {
    const ca = dirname(cp.caFile);
    const out = await runDocs('b', [
      'NODE=docs-b',
      docBlock('openssl genpkey'),
      `cp ${join(ca, 'ca.crt')} ${join(ca, 'ca.key')} .`,
      docBlock('openssl x509 -req'),
      docBlock('{.clusters[0].cluster.server}'),
      nodeKubeconfigBlock(),
    ]);
    assert.match(out, /Username\s+system:node:docs-b\n/);
  });

  it('lets a node with a bootstrap token get its certificate without an admin (docs, way c; manifests/cluster)', async () => {
    const made = await runDocs('c', [`ln -s ${join(repoRoot, 'manifests')} manifests`, docBlock('kubectl apply -f manifests/cluster/rbac/'), docBlock('openssl rand')]);
    const token = /^token: ([a-z0-9]{6})\.([a-z0-9]{16})$/m.exec(made);
    assert.ok(token, `the docs print the token:\n${made}`);
    const [, id] = token;
    // A token id of digits only (openssl rand -hex gives one now and then) is still a string.
    const template = await readFile(join(repoRoot, 'manifests', 'cluster', 'bootstrap-token-secret.yaml'), 'utf8');
    const digits = template.replaceAll('TOKEN_ID', '012345').replaceAll('TOKEN_SECRET', '0123456789012345').replaceAll('EXPIRATION', '2099-01-01T00:00:00Z');
    await kubectl(['apply', '--dry-run=server', '-f', '-'], { input: digits });
    const bootstrap = await assembleKubeconfig('bootstrap', [`--token=${token[1]}.${token[2]}`]);
    const me = await whoami(bootstrap);
    assert.equal(me.username, `system:bootstrap:${id}`);
    assert.ok(me.groups.includes('system:bootstrappers'), `groups: ${me.groups.join(', ')}`);
    assert.ok(me.groups.includes('system:bootstrappers:usernode'), `groups: ${me.groups.join(', ')}`);

    const { key, csrPem } = await nodeKeyAndCsr('n3');
    await kubectl(['create', '-f', '-'], { kubeconfig: bootstrap, input: csrObject('node-n3', csrPem) });
    const certFile = join(scratch, 'n3.crt');
    await writeFile(certFile, await issuedCertificate('node-n3', bootstrap));
    const approval = JSON.parse(await kubectl(['get', 'csr', 'node-n3', '-o', 'json'])) as { status: { conditions: Array<{ type: string; reason: string }> } };
    assert.deepEqual(approval.status.conditions.map((c) => `${c.type}/${c.reason}`), ['Approved/AutoApproved']);
    const node = await assembleKubeconfig('n3', [`--client-certificate=${certFile}`, `--client-key=${key}`, '--embed-certs']);
    assert.equal((await whoami(node)).username, 'system:node:n3');
    // A bootstrap token can do nothing else.
    assert.match((await cp.kubectl(['auth', 'can-i', 'list', 'pods', '-A'], { kubeconfig: bootstrap })).stdout, /^no/);

    // Renewal: the node asks for its own name's certificate again, also approved without an admin.
    const renewal = await nodeKeyAndCsr('n3');
    await kubectl(['create', '-f', '-'], { kubeconfig: node, input: csrObject('node-n3-renewal', renewal.csrPem) });
    assert.match(await issuedCertificate('node-n3-renewal', node), /BEGIN CERTIFICATE/);
  });

  it("reaches a node's kubelet API on 127.0.0.1 with its kubelet client certificate (logs, exec, port-forward)", async () => {
    // A stand-in kubelet API with a self-signed serving certificate, as usernode's is.
    const key = join(scratch, 'kubelet.key');
    const crt = join(scratch, 'kubelet.crt');
    await openssl(['req', '-x509', '-new', '-nodes', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256', '-keyout', key, '-out', crt, '-subj', '/CN=n1', '-days', '1', '-addext', 'subjectAltName=IP:127.0.0.1']);
    const callers: string[] = [];
    const server: Server = createServer({ key: await readFile(key), cert: await readFile(crt), ca: await readFile(cp.caFile), requestCert: true, rejectUnauthorized: true }, (req, res) => {
      callers.push(`${(req.socket as TLSSocket).getPeerCertificate().subject.CN} ${req.method} ${req.url}`);
      res.end('hello from the kubelet\n');
    });
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
    try {
      const port = (server.address() as AddressInfo).port;
      const n1 = await cp.nodeKubeconfig('n1');
      // Registered as kubelet registers: the create carries the status, addresses and port.
      const status = { addresses: [{ type: 'InternalIP', address: '127.0.0.1' }, { type: 'Hostname', address: 'n1' }], daemonEndpoints: { kubeletEndpoint: { Port: port } } };
      await kubectl(['create', '-f', '-'], { kubeconfig: n1, input: JSON.stringify({ apiVersion: 'v1', kind: 'Node', metadata: { name: 'n1' }, status }) });
      assert.equal(await kubectl(['get', 'node', 'n1', '-o', 'jsonpath={.status.daemonEndpoints.kubeletEndpoint.Port}']), String(port));
      const pod = { apiVersion: 'v1', kind: 'Pod', metadata: { name: 'on-n1' }, spec: { nodeName: 'n1', containers: [{ name: 'c', image: 'registry.invalid/c:1' }] } };
      await kubectl(['create', '-f', '-'], { input: JSON.stringify(pod) });
      assert.equal(await kubectl(['logs', 'on-n1', '--tail=5']), 'hello from the kubelet\n');
      assert.deepEqual(callers, [`${kubeletClientUser} GET /containerLogs/default/on-n1/c?tailLines=5`]);
      // exec reaches it too (the stand-in does not upgrade the connection, so kubectl fails).
      const execed = await cp.kubectl(['exec', 'on-n1', '--', 'true'], { timeoutMs: 20000 });
      assert.notEqual(execed.code, 0);
      assert.match(callers[1] ?? '', new RegExp(`^${kubeletClientUser} (GET|POST) /exec/default/on-n1/c\\?command=true`), callers.join('\n'));
      // kubectl port-forward wants a Running pod: say so as the node would.
      await kubectl(['patch', 'pod', 'on-n1', '--subresource=status', '--type=merge', '-p', '{"status":{"phase":"Running"}}']);
      const forwarded = await cp.kubectl(['port-forward', 'pod/on-n1', '0:80'], { timeoutMs: 20000 });
      assert.notEqual(forwarded.code, 0);
      assert.match(callers[2] ?? '', new RegExp(`^${kubeletClientUser} (GET|POST) /portForward/default/on-n1`), callers.join('\n'));
      // The apiserver's node proxy (nodes/NAME/proxy/...) refuses loopback addresses, whoever asks:
      // what goes through it (kubectl get --raw .../proxy/stats/summary) cannot reach a node on 127.0.0.1.
      const proxied = await cp.kubectl(['get', '--raw', '/api/v1/nodes/n1/proxy/healthz']);
      assert.match(proxied.stderr, /address not allowed/);
    } finally {
      await new Promise<void>((r) => server.close(() => r()));
    }
  });

  it('stops: no process left, no folder left', async () => {
    const { pids, dir } = cp;
    assert.equal(pids.length, 4);
    await cp.stop();
    await cp.stop();
    const alive = pids.filter((pid) => {
      try {
        process.kill(pid, 0);
        return true;
      } catch {
        return false;
      }
    });
    assert.deepEqual(alive, []);
    assert.equal(existsSync(dir), false);
  });
});
