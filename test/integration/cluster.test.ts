import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { mkdir, writeFile } from 'node:fs/promises';
import { request } from 'node:https';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';

import { type AgentProcess, eventually, freePort, requiredEnv, sleep, TestNode } from '../lib/agent.js';
import { type ControlPlane, requiredControlPlaneTool, startControlPlane } from '../lib/control_plane.js';

// usernode in a real cluster: kube-apiserver, kube-controller-manager,
// kube-scheduler and etcd from the test bed; the agent as the unprivileged
// user with a node client certificate (system:node:<name>, so the Node
// authorizer and NodeRestriction judge it as they judge kubelet); kubectl as
// the cluster admin. Everything a user of the cluster would look at.

const nodeName = 'usernode-e2e';

type Pod = {
  metadata: { name: string; uid: string; annotations?: Record<string, string>; deletionTimestamp?: string };
  spec: { nodeName?: string };
  status: {
    phase?: string;
    podIP?: string;
    hostIP?: string;
    startTime?: string;
    conditions?: Array<{ type: string; status: string }>;
    containerStatuses?: Array<{ name: string; ready: boolean; started?: boolean; restartCount: number; containerID?: string; imageID?: string; state: Record<string, { reason?: string; exitCode?: number }>; lastState?: Record<string, unknown> }>;
    reason?: string;
    message?: string;
  };
};

describe('usernode in a cluster (real control plane, kubectl)', () => {
  let cp: ControlPlane;
  let node: TestNode;
  let agent: AgentProcess;
  let busybox: string;
  let kubeletPort: number;
  let staticDir: string;

  const kubectl = async (args: string[], input?: string): Promise<string> => {
    const r = await cp.kubectl(args, input === undefined ? {} : { input });
    if (r.code !== 0) throw new Error(`kubectl ${args.join(' ')}: ${r.stderr}`);
    return r.stdout;
  };
  const pod = async (name: string): Promise<Pod | undefined> => {
    const r = await cp.kubectl(['get', 'pod', name, '-o', 'json']);
    return r.code === 0 ? (JSON.parse(r.stdout) as Pod) : undefined;
  };
  const running = (name: string, timeoutMs = 90000): Promise<Pod> =>
    eventually(`pod ${name} Running`, async () => {
      const p = await pod(name);
      return p?.status.phase === 'Running' && p.status.containerStatuses?.every((c) => c.ready) ? p : undefined;
    }, timeoutMs);
  const apply = (yaml: string): Promise<string> => kubectl(['apply', '-f', '-'], yaml);
  const agentArgs = async (): Promise<string[]> => [
    '--kubeconfig', await cp.nodeKubeconfig(nodeName), '--node-name', nodeName, '--node-ip', '127.0.0.1', '--kubelet-address', `127.0.0.1:${kubeletPort}`,
    '--node-labels', 'usernode.io/test=yes,node-role.kubernetes.io/worker=', '--cluster-dns', '10.96.0.10',
  ];

  before(async () => {
    const t0 = Date.now();
    cp = await startControlPlane();
    console.log(`control plane up in ${Date.now() - t0} ms`);
    const bed = JSON.parse(readFileSync(requiredEnv('USERNODE_TEST_IMAGES'), 'utf8')) as { registry: string; authRegistry: string };
    busybox = `${bed.registry}/usernode/busybox:latest`;
    node = await TestNode.create();
    kubeletPort = await freePort();
    await node.writeConfig(`registries:\n  "${bed.registry}": { plainHttp: true }\n  "${bed.authRegistry}": { plainHttp: true }\nclientCAFile: ${cp.caFile}\n`);
    staticDir = join(node.dir, 'config', 'usernode', 'manifests');
    await mkdir(staticDir, { recursive: true });
    await writeFile(
      join(staticDir, 'static-web.yaml'),
      `apiVersion: v1\nkind: Pod\nmetadata: { name: static-web, namespace: default, labels: { app: static-web } }\nspec:\n  containers:\n    - name: web\n      image: ${busybox}\n      command: ["sh", "-c", "echo static up; exec sleep 3600"]\n`,
    );
    agent = node.start(await agentArgs());
    await agent.ready();
  });

  after(async () => {
    agent?.child.kill('SIGTERM');
    await agent?.exited;
    await node?.destroy();
    await cp?.stop();
  });

  it('kubectl get nodes: the node is Ready, with its capacity, nodeInfo and labels', async () => {
    const n = await eventually('the node Ready', async () => {
      const r = await cp.kubectl(['get', 'node', nodeName, '-o', 'json']);
      if (r.code !== 0) return undefined;
      const o = JSON.parse(r.stdout) as {
        metadata: { labels: Record<string, string> };
        status: { conditions: Array<{ type: string; status: string; reason: string }>; capacity: Record<string, string>; allocatable: Record<string, string>; nodeInfo: Record<string, string>; addresses: Array<{ type: string; address: string }>; daemonEndpoints: { kubeletEndpoint: { Port: number } } };
      };
      return o.status.conditions?.find((c) => c.type === 'Ready')?.status === 'True' ? o : undefined;
    }, 60000);
    assert.equal(n.metadata.labels['kubernetes.io/hostname'], nodeName);
    assert.equal(n.metadata.labels['kubernetes.io/os'], 'linux');
    assert.equal(n.metadata.labels['usernode.io/test'], 'yes');
    assert.ok(Number(n.status.capacity.cpu) >= 1, `cpu capacity ${n.status.capacity.cpu}`);
    assert.match(n.status.capacity.memory!, /^\d+Ki$/);
    assert.equal(n.status.capacity.pods, '110');
    assert.match(n.status.nodeInfo.containerRuntimeVersion!, /^usernode:\/\/\d+\.\d+\.\d+/);
    assert.deepEqual(n.status.addresses.find((a) => a.type === 'InternalIP')?.address, '127.0.0.1');
    assert.equal(n.status.daemonEndpoints.kubeletEndpoint.Port, kubeletPort);
    for (const t of ['MemoryPressure', 'DiskPressure', 'PIDPressure']) assert.equal(n.status.conditions.find((c) => c.type === t)?.status, 'False', t);
    // A role label is an admin's to set (NodeRestriction): the node says so and registers without it.
    assert.equal(n.metadata.labels['node-role.kubernetes.io/worker'], undefined);
    assert.match(await eventually('the role label warning', async () => (agent.log.includes('kubectl label node') ? agent.log : undefined)), new RegExp(`kubectl label node ${nodeName} node-role.kubernetes.io/worker=`));
    const table = await kubectl(['get', 'nodes']);
    assert.match(table, new RegExp(`^${nodeName}\\s+Ready\\s`, 'm'));
  });

  it('renews its Lease in kube-node-lease', async () => {
    const renew = async (): Promise<string> => (JSON.parse(await kubectl(['get', 'lease', '-n', 'kube-node-lease', nodeName, '-o', 'json'])) as { spec: { renewTime: string; holderIdentity: string } }).spec.renewTime;
    const first = await eventually('the lease', () => renew());
    const later = await eventually('a renewed lease', async () => {
      const t = await renew();
      return t !== first ? t : undefined;
    }, 30000);
    assert.ok(Date.parse(later) > Date.parse(first));
  });

  it('kubectl run: the pod runs, with a pod IP, the host IP, start time and container status', async () => {
    await kubectl(['run', 'hello', `--image=${busybox}`, '--restart=Never', '--', 'sh', '-c', 'echo hello from usernode; for i in $(seq 1000); do echo line $i; sleep 1; done']);
    const p = await running('hello');
    assert.equal(p.spec.nodeName, nodeName);
    assert.match(p.status.podIP ?? '', /^10\.88\./);
    assert.equal(p.status.hostIP, '127.0.0.1');
    assert.ok(p.status.startTime);
    const c = p.status.containerStatuses![0]!;
    assert.match(c.containerID ?? '', /^usernode:\/\/[0-9a-f]{64}$/);
    assert.match(c.imageID ?? '', /sha256:[0-9a-f]{64}/);
    assert.ok(c.state.running, JSON.stringify(c.state));
    for (const t of ['Initialized', 'ContainersReady', 'Ready']) assert.equal(p.status.conditions?.find((x) => x.type === t)?.status, 'True', t);
  });

  it('kubectl logs, logs -f, exec and port-forward reach the pod through the kubelet API', async () => {
    const logs = await eventually('logs', async () => {
      const out = await kubectl(['logs', 'hello']);
      return out.includes('line 2') ? out : undefined;
    });
    assert.match(logs, /^hello from usernode\n/);
    assert.equal(await kubectl(['logs', 'hello', '--tail=1']).then((s) => s.split('\n').filter(Boolean).length), 1);
    // -f: a line written after the call arrives.
    const follow = spawn(requiredControlPlaneTool('USERNODE_KUBECTL'), ['--kubeconfig', cp.adminKubeconfig, 'logs', '-f', '--tail=1', 'hello']);
    let followed = '';
    follow.stdout.on('data', (d: Buffer) => (followed += d.toString()));
    await eventually('two lines followed', async () => (followed.split('\n').filter(Boolean).length >= 3 ? true : undefined), 20000);
    follow.kill();
    const exec = await kubectl(['exec', 'hello', '--', 'sh', '-c', 'echo in $(hostname); cat /proc/1/cmdline | tr "\\0" " "']);
    assert.match(exec, /^in hello\n/);
    const input = await kubectl(['exec', '-i', 'hello', '--', 'cat'], 'through stdin\n');
    assert.equal(input, 'through stdin\n');
    await kubectl(['exec', 'hello', '--', 'sh', '-c', 'mkdir -p /www && echo served by the pod > /www/index.html && (httpd -p 8080 -h /www &)']);
    const local = await freePort();
    const pf = spawn(requiredControlPlaneTool('USERNODE_KUBECTL'), ['--kubeconfig', cp.adminKubeconfig, 'port-forward', 'pod/hello', `${local}:8080`]);
    try {
      const page = await eventually('the page through port-forward', async () => {
        const r = await fetch(`http://127.0.0.1:${local}/`, { signal: AbortSignal.timeout(3000) });
        return r.ok ? r.text() : undefined;
      }, 20000);
      assert.equal(page, 'served by the pod\n');
    } finally {
      pf.kill();
    }
  });

  it('a Deployment of 3 replicas: scheduled by kube-scheduler, all Running on the node', async () => {
    await apply(`apiVersion: apps/v1
kind: Deployment
metadata: { name: web3 }
spec:
  replicas: 3
  selector: { matchLabels: { app: web3 } }
  template:
    metadata: { labels: { app: web3 } }
    spec:
      terminationGracePeriodSeconds: 2
      containers:
        - name: web
          image: ${busybox}
          command: ["sh", "-c", "exec sleep 3600"]
`);
    const ready = await eventually('3 replicas available', async () => {
      const d = JSON.parse(await kubectl(['get', 'deployment', 'web3', '-o', 'json'])) as { status: { availableReplicas?: number } };
      return d.status.availableReplicas === 3 ? d : undefined;
    }, 120000);
    assert.ok(ready);
    const pods = JSON.parse(await kubectl(['get', 'pods', '-l', 'app=web3', '-o', 'json'])) as { items: Pod[] };
    assert.equal(pods.items.length, 3);
    assert.ok(pods.items.every((p) => p.spec.nodeName === nodeName && p.status.phase === 'Running'));
    assert.equal(new Set(pods.items.map((p) => p.status.podIP)).size, 3, 'three pod IPs');
  });

  it('configMap, secret and service-account token volumes are readable in the pod; env from them', async () => {
    await kubectl(['create', 'configmap', 'settings', '--from-literal=greeting=hello-config', '--from-literal=mode=fast']);
    await kubectl(['create', 'secret', 'generic', 'creds', '--from-literal=password=s3cret-value']);
    await apply(`apiVersion: v1
kind: Pod
metadata: { name: volumes }
spec:
  terminationGracePeriodSeconds: 1
  containers:
    - name: app
      image: ${busybox}
      command: ["sh", "-c", "exec sleep 3600"]
      env:
        - { name: MODE, valueFrom: { configMapKeyRef: { name: settings, key: mode } } }
        - { name: PASSWORD, valueFrom: { secretKeyRef: { name: creds, key: password } } }
      volumeMounts:
        - { name: cfg, mountPath: /etc/cfg }
        - { name: sec, mountPath: /etc/sec, readOnly: true }
  volumes:
    - { name: cfg, configMap: { name: settings } }
    - { name: sec, secret: { secretName: creds } }
`);
    await running('volumes');
    const sa = '/var/run/secrets/kubernetes.io/serviceaccount';
    const out = await kubectl(['exec', 'volumes', '--', 'sh', '-c', `cat /etc/cfg/greeting; echo; cat /etc/sec/password; echo; echo $MODE $PASSWORD; cat ${sa}/namespace; echo; head -c 3 ${sa}/token; echo; grep -c BEGIN ${sa}/ca.crt`]);
    const [greeting, password, env, namespace, tokenStart, caCount] = out.split('\n');
    assert.equal(greeting, 'hello-config');
    assert.equal(password, 's3cret-value');
    assert.equal(env, 'fast s3cret-value');
    assert.equal(namespace, 'default');
    assert.equal(tokenStart, 'eyJ', 'a JWT from the TokenRequest API');
    assert.ok(Number(caCount) >= 1, 'the cluster CA from kube-root-ca.crt');
    // The token is a real one: the API server accepts it (TokenReview as the admin).
    const token = await kubectl(['exec', 'volumes', '--', 'cat', `${sa}/token`]);
    const review = JSON.parse(await kubectl(['create', '-o', 'json', '-f', '-'], JSON.stringify({ apiVersion: 'authentication.k8s.io/v1', kind: 'TokenReview', spec: { token } }))) as { status: { authenticated: boolean; user: { username: string } } };
    assert.equal(review.status.authenticated, true);
    assert.equal(review.status.user.username, 'system:serviceaccount:default:default');
  });

  it('imagePullSecrets: an image from a registry that wants a login is pulled with the docker-registry secret', async () => {
    const bed = JSON.parse(readFileSync(requiredEnv('USERNODE_TEST_IMAGES'), 'utf8')) as { authRegistry: string; authUser: string };
    const [user, password] = bed.authUser.split(':');
    await kubectl(['create', 'secret', 'docker-registry', 'regcred', `--docker-server=${bed.authRegistry}`, `--docker-username=${user}`, `--docker-password=${password}`]);
    const spec = (name: string, secrets: string): string => `apiVersion: v1
kind: Pod
metadata: { name: ${name} }
spec:
  terminationGracePeriodSeconds: 1
${secrets}  containers:
    - name: app
      image: ${bed.authRegistry}/usernode/private:latest
      command: ["sh", "-c", "cat /etc/usernode-private; exec sleep 3600"]
`;
    await apply(spec('private-without', ''));
    await apply(spec('private-with', '  imagePullSecrets: [{ name: regcred }]\n'));
    await running('private-with');
    assert.equal(await kubectl(['logs', 'private-with']), 'private\n');
    const refused = await eventually('the pull refused without the secret', async () => {
      const w = (await pod('private-without'))?.status.containerStatuses?.[0]?.state.waiting;
      return w?.reason === 'ErrImagePull' || w?.reason === 'ImagePullBackOff' ? w : undefined;
    }, 60000);
    assert.ok(refused);
    await kubectl(['delete', 'pod', 'private-with', 'private-without', '--wait=false']);
  });

  it("securityContext: the pod runs as the user and groups it asks for, read-only where it asks; what a rootless node cannot give is refused", async () => {
    await apply(`apiVersion: v1
kind: Pod
metadata: { name: secured }
spec:
  terminationGracePeriodSeconds: 1
  securityContext: { runAsUser: 1000, runAsGroup: 3000, fsGroup: 2000, runAsNonRoot: true }
  containers:
    - name: app
      image: ${busybox}
      command: ["sh", "-c", "exec sleep 3600"]
      securityContext: { readOnlyRootFilesystem: true, allowPrivilegeEscalation: false, capabilities: { drop: [ALL] } }
      volumeMounts: [{ name: scratch, mountPath: /scratch }]
  volumes: [{ name: scratch, emptyDir: {} }]
`);
    await running('secured');
    const out = await kubectl(['exec', 'secured', '--', 'sh', '-c', 'id -u; id -g; id -G; touch /rootfs-file 2>/dev/null && echo rootfs-writable || echo rootfs-read-only; touch /scratch/f && echo scratch-writable; grep ^NoNewPrivs /proc/self/status; grep ^CapEff /proc/self/status']);
    const [uid, gid, groups, rootfs, scratch, nnp, capEff] = out.trim().split('\n');
    assert.equal(uid, '1000');
    assert.equal(gid, '3000');
    assert.ok(groups!.split(' ').includes('2000'), `fsGroup among the groups: ${groups}`);
    assert.equal(rootfs, 'rootfs-read-only');
    assert.equal(scratch, 'scratch-writable', 'an emptyDir is writable by any user, as kubelet makes it');
    assert.match(nnp!, /NoNewPrivs:\s+1/);
    assert.match(capEff!, /CapEff:\s+0+$/);
    // runAsNonRoot with an image that runs as root: the container is not made, and the status says why.
    await apply(`apiVersion: v1
kind: Pod
metadata: { name: nonroot-refused }
spec:
  securityContext: { runAsNonRoot: true }
  containers: [{ name: app, image: ${busybox}, command: ["sleep", "3600"] }]
`);
    const waiting = await eventually('runAsNonRoot refused', async () => {
      const w = (await pod('nonroot-refused'))?.status.containerStatuses?.[0]?.state.waiting;
      return w?.reason === 'CreateContainerConfigError' ? w : undefined;
    }, 60000);
    assert.match((waiting as { message?: string }).message ?? '', /runAsNonRoot and image will run as root/);
    // A Localhost AppArmor profile: the API server takes it; a rootless node cannot load one. (A privileged
    // container the API server itself refuses without --allow-privileged; the node refuses it too, unit-tested.)
    await apply(`apiVersion: v1
kind: Pod
metadata: { name: apparmor-refused }
spec:
  containers: [{ name: app, image: ${busybox}, securityContext: { appArmorProfile: { type: Localhost, localhostProfile: my-profile } } }]
`);
    const refused = await eventually('the AppArmor profile refused', async () => {
      const p = await pod('apparmor-refused');
      return p?.status.message ? p : undefined;
    });
    assert.match(refused.status.message!, /spec\.containers\[0\]\.securityContext\.appArmorProfile\.type/);
    assert.equal(refused.status.phase, 'Failed');
    await kubectl(['delete', 'pod', 'secured', 'nonroot-refused', 'apparmor-refused', '--wait=false']);
  });

  it('service env vars: KUBERNETES_SERVICE_HOST and the namespace\'s services, as kubelet gives them', async () => {
    await apply(`apiVersion: v1
kind: Service
metadata: { name: web-svc }
spec:
  selector: { app: web3 }
  ports: [{ name: http, port: 8080, protocol: TCP }]
`);
    const svc = JSON.parse(await kubectl(['get', 'service', 'web-svc', '-o', 'json'])) as { spec: { clusterIP: string } };
    await apply(`apiVersion: v1
kind: Pod
metadata: { name: service-env }
spec:
  terminationGracePeriodSeconds: 1
  containers:
    - name: app
      image: ${busybox}
      command: ["sh", "-c", "exec sleep 3600"]
      env: [{ name: WEB, value: "$(WEB_SVC_SERVICE_HOST):$(WEB_SVC_SERVICE_PORT_HTTP)" }]
`);
    await running('service-env');
    const env = await kubectl(['exec', 'service-env', '--', 'env']);
    const kubernetes = JSON.parse(await kubectl(['get', 'service', 'kubernetes', '-n', 'default', '-o', 'json'])) as { spec: { clusterIP: string } };
    assert.match(env, new RegExp(`^KUBERNETES_SERVICE_HOST=${kubernetes.spec.clusterIP.replace(/\./g, '\\.')}$`, 'm'));
    assert.match(env, /^KUBERNETES_SERVICE_PORT=443$/m);
    assert.match(env, new RegExp(`^WEB_SVC_PORT_8080_TCP=tcp://${svc.spec.clusterIP.replace(/\./g, '\\.')}:8080$`, 'm'));
    assert.match(env, new RegExp(`^WEB=${svc.spec.clusterIP.replace(/\./g, '\\.')}:8080$`, 'm'), 'service vars expand in $(VAR)');
    await kubectl(['delete', 'pod', 'service-env', '--wait=false']);
  });

  it("DNS: a ClusterFirst pod gets the cluster DNS and the namespace's searches; dnsPolicy None its own", async () => {
    const resolv = await kubectl(['exec', 'hello', '--', 'cat', '/etc/resolv.conf']);
    assert.match(resolv, /^nameserver 10\.96\.0\.10$/m);
    assert.match(resolv, /^search default\.svc\.cluster\.local svc\.cluster\.local cluster\.local\b/m);
    assert.match(resolv, /^options ndots:5$/m);
    await apply(`apiVersion: v1
kind: Pod
metadata: { name: own-dns }
spec:
  terminationGracePeriodSeconds: 1
  dnsPolicy: None
  dnsConfig: { nameservers: [192.0.2.53], searches: [corp.example], options: [{ name: ndots, value: "2" }] }
  containers: [{ name: app, image: ${busybox}, command: ["sh", "-c", "exec sleep 3600"] }]
`);
    await running('own-dns');
    const own = await kubectl(['exec', 'own-dns', '--', 'cat', '/etc/resolv.conf']);
    assert.match(own, /^nameserver 192\.0\.2\.53$/m);
    assert.match(own, /^search corp\.example$/m);
    assert.doesNotMatch(own, /10\.96\.0\.10/);
    await kubectl(['delete', 'pod', 'own-dns', '--wait=false']);
  });

  it('probes: a failing liveness probe restarts the container; readiness follows its probe', async () => {
    await apply(`apiVersion: v1
kind: Pod
metadata: { name: probed }
spec:
  terminationGracePeriodSeconds: 1
  containers:
    - name: app
      image: ${busybox}
      command: ["sh", "-c", "touch /tmp/healthy; exec sleep 3600"]
      livenessProbe:
        exec: { command: ["test", "-e", "/tmp/healthy"] }
        periodSeconds: 1
        failureThreshold: 2
      readinessProbe:
        exec: { command: ["test", "-e", "/tmp/ready"] }
        periodSeconds: 1
`);
    const p = await eventually('probed running, not ready', async () => {
      const x = await pod('probed');
      return x?.status.phase === 'Running' && x.status.containerStatuses?.[0]?.state.running ? x : undefined;
    }, 60000);
    assert.equal(p.status.containerStatuses![0]!.ready, false, 'not ready before /tmp/ready exists');
    await kubectl(['exec', 'probed', '--', 'touch', '/tmp/ready']);
    await eventually('probed ready', async () => ((await pod('probed'))?.status.containerStatuses?.[0]?.ready ? true : undefined), 30000);
    await kubectl(['exec', 'probed', '--', 'rm', '/tmp/healthy']);
    const restarted = await eventually('a restart by the liveness probe', async () => {
      const x = await pod('probed');
      return (x?.status.containerStatuses?.[0]?.restartCount ?? 0) >= 1 ? x : undefined;
    }, 60000);
    assert.ok(restarted.status.containerStatuses![0]!.lastState, 'the killed container is the last state');
    const events = await kubectl(['get', 'events', '--field-selector', 'involvedObject.name=probed', '-o', 'json']);
    assert.match(events, /"reason": "Unhealthy"/);
    assert.match(events, /"reason": "Killing"/);
  });

  it('network probes from the node: httpGet readiness on the pod IP, tcpSocket liveness holding', async () => {
    await apply(`apiVersion: v1
kind: Pod
metadata: { name: http-probed }
spec:
  terminationGracePeriodSeconds: 1
  containers:
    - name: web
      image: ${busybox}
      command: ["sh", "-c", "mkdir -p /www && exec httpd -f -p 8080 -h /www"]
      ports: [{ name: http, containerPort: 8080 }]
      readinessProbe: { httpGet: { path: /ready.html, port: http }, periodSeconds: 1 }
      livenessProbe: { tcpSocket: { port: 8080 }, periodSeconds: 1, failureThreshold: 2 }
`);
    const p = await eventually('http-probed running', async () => {
      const x = await pod('http-probed');
      return x?.status.containerStatuses?.[0]?.state.running ? x : undefined;
    }, 60000);
    await sleep(3000);
    const before = (await pod('http-probed'))!.status.containerStatuses![0]!;
    assert.equal(before.ready, false, 'a 404 is not ready');
    await kubectl(['exec', 'http-probed', '--', 'sh', '-c', 'echo ok > /www/ready.html']);
    const ready = await eventually('ready by its httpGet probe', async () => {
      const c = (await pod('http-probed'))?.status.containerStatuses?.[0];
      return c?.ready ? c : undefined;
    }, 30000);
    assert.equal(ready.restartCount, 0, 'the tcpSocket liveness probe finds the port open');
    assert.ok(p.status.podIP);
    await kubectl(['delete', 'pod', 'http-probed', '--wait=false']);
  });

  it('activeDeadlineSeconds: a pod active past it is Failed with DeadlineExceeded', async () => {
    await apply(`apiVersion: v1
kind: Pod
metadata: { name: deadline }
spec:
  activeDeadlineSeconds: 3
  terminationGracePeriodSeconds: 1
  restartPolicy: Always
  containers: [{ name: app, image: ${busybox}, command: ["sleep", "3600"] }]
`);
    const failed = await eventually('the pod Failed by its deadline', async () => {
      const p = await pod('deadline');
      return p?.status.phase === 'Failed' ? p : undefined;
    }, 60000);
    assert.equal(failed.status.reason, 'DeadlineExceeded');
    assert.ok(failed.status.containerStatuses?.[0]?.state.terminated, 'its container stopped');
    await kubectl(['delete', 'pod', 'deadline', '--wait=false']);
  });

  it('kubectl delete pod: stopped within its grace period, then gone from the API server and the node', async () => {
    const t0 = Date.now();
    await kubectl(['delete', 'pod', 'volumes', '--wait=true', '--timeout=60s']);
    const took = Date.now() - t0;
    console.log(`delete of a pod with a 1 s grace period took ${took} ms`);
    assert.equal(await pod('volumes'), undefined);
    await eventually('its sandbox gone', async () => {
      const r = await node.crictl(['pods', '--name', '^volumes$', '-q']);
      return r.stdout.trim() === '' ? true : undefined;
    });
  });

  it('a static pod runs and its mirror pod shows in the API server', async () => {
    const mirror = await running(`static-web-${nodeName}`);
    assert.ok(mirror.metadata.annotations?.['kubernetes.io/config.mirror'], 'the mirror annotation');
    const logs = await kubectl(['logs', `static-web-${nodeName}`]);
    assert.equal(logs, 'static up\n');
    // Deleting the mirror pod does not stop the static pod: the mirror comes back.
    const uid = mirror.metadata.uid;
    await kubectl(['delete', 'pod', `static-web-${nodeName}`, '--wait=false']);
    await eventually('a new mirror pod', async () => {
      const p = await pod(`static-web-${nodeName}`);
      return p && p.metadata.uid !== uid && !p.metadata.deletionTimestamp ? true : undefined;
    }, 60000);
  });

  it('a pod the node cannot run gets a status and an event saying why; the others run on', async () => {
    await apply(`apiVersion: v1
kind: Pod
metadata: { name: unrunnable }
spec:
  containers:
    - name: app
      image: ${busybox}
      volumeMounts: [{ name: disk, mountPath: /disk }]
  volumes:
    - { name: disk, iscsi: { targetPortal: "10.0.0.1:3260", iqn: "iqn.2001-04.com.example:storage", lun: 0 } }
`);
    await apply(`apiVersion: v1
kind: Pod
metadata: { name: missing-config }
spec:
  containers:
    - name: app
      image: ${busybox}
      command: ["sleep", "3600"]
      env: [{ name: X, valueFrom: { configMapKeyRef: { name: no-such-config, key: x } } }]
`);
    const bad = await eventually('unrunnable refused', async () => {
      const p = await pod('unrunnable');
      return p?.status.message ? p : undefined;
    });
    assert.match(bad.status.message!, /spec\.volumes\[0\].*iscsi/);
    const waiting = await eventually('missing-config waiting', async () => {
      const p = await pod('missing-config');
      const w = p?.status.containerStatuses?.[0]?.state.waiting;
      return w?.reason === 'CreateContainerConfigError' ? w : undefined;
    }, 60000);
    assert.ok(waiting);
    const events = await kubectl(['get', 'events', '--field-selector', 'involvedObject.name=unrunnable', '-o', 'json']);
    assert.match(events, /"type": "Warning"/);
    assert.equal((await pod('hello'))?.status.phase, 'Running', 'the other pods run on');
  });

  it('an agent restart keeps the pods running, not restarted', async () => {
    const before = (await pod('hello'))!.status.containerStatuses![0]!;
    agent.child.kill('SIGTERM');
    await agent.exited;
    agent = node.start(await agentArgs());
    await agent.ready();
    await sleep(5000);
    const after = (await pod('hello'))!;
    // The pods come from a LIST now, whose items carry no kind: still run, not refused (Failed, UnsupportedPodSpec).
    assert.equal(after.status.phase, 'Running', `${after.status.reason}: ${after.status.message}`);
    const now = after.status.containerStatuses![0]!;
    assert.equal(now.containerID, before.containerID);
    assert.equal(now.restartCount, 0);
    assert.ok(now.state.running);
  });

  it('the API server away: pods run on, their status catches up when it is back, the Node stays Ready (its lease has not expired)', async () => {
    const pods = JSON.parse(await kubectl(['get', 'pods', '-l', 'app=web3', '-o', 'json'])) as { items: Pod[] };
    const target = pods.items[0]!;
    const containerId = target.status.containerStatuses![0]!.containerID!.replace('usernode://', '');
    const comm = (pid: number): string => { try { return readFileSync(`/proc/${pid}/comm`, 'utf8').trim(); } catch { return ''; } };
    const apiserver = cp.pids.find((pid) => comm(pid) === 'kube-apiserver')!;
    assert.ok(apiserver, 'the bed runs a kube-apiserver');
    // Frozen, not killed: connections hang as they would to a server gone from the network.
    process.kill(apiserver, 'SIGSTOP');
    try {
      // The container dies while the API server is away; the node restarts it (restartPolicy Always).
      assert.equal((await node.crictl(['stop', '-t', '0', containerId])).code, 0);
      await eventually('the container restarted by the node (agent log: see below)', async () => {
        const r = JSON.parse((await node.crictl(['ps', '--name', '^web$', '--label', `io.kubernetes.pod.uid=${target.metadata.uid}`, '-o', 'json'])).stdout) as { containers: Array<{ state: string; metadata: { attempt: number } }> };
        return r.containers.some((c) => c.state === 'CONTAINER_RUNNING' && c.metadata.attempt >= 1) ? true : undefined;
      }, 30000).catch((e: unknown) => {
        throw new Error(`${(e as Error).message}\n--- agent log (tail) ---\n${agent.log.split('\n').slice(-60).join('\n')}`);
      });
    } finally {
      process.kill(apiserver, 'SIGCONT');
    }
    const caught = await eventually('the restart in the pod status', async () => {
      const p = await pod(target.metadata.name);
      return (p?.status.containerStatuses?.[0]?.restartCount ?? 0) >= 1 ? p : undefined;
    }, 60000);
    assert.ok(caught.status.containerStatuses![0]!.state.running);
    const ready = JSON.parse(await kubectl(['get', 'node', nodeName, '-o', 'json'])) as { status: { conditions: Array<{ type: string; status: string }> } };
    assert.equal(ready.status.conditions.find((c) => c.type === 'Ready')?.status, 'True');
    assert.equal((await pod('hello'))?.status.phase, 'Running', 'the other pods ran on');
  });

  it('the kubelet API refuses an unauthenticated caller', async () => {
    const status = await new Promise<number>((resolve, reject) => {
      const r = request({ host: '127.0.0.1', port: kubeletPort, path: '/pods', rejectUnauthorized: false }, (res) => {
        res.resume();
        resolve(res.statusCode ?? 0);
      });
      r.on('error', reject);
      r.end();
    });
    assert.equal(status, 401);
  });
});
