import assert from 'node:assert/strict';
import { mkdir, readFile } from 'node:fs/promises';
import { randomBytes } from 'node:crypto';
import { request } from 'node:https';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';

import { WebSocket } from 'ws';

import { criClients, type CriClients } from '../../proto/client.js';
import { createLogger } from '../../pkg/log/logger.js';
import { type KubeletServer, serveKubeletApi } from '../../pkg/node/kubelet_server.js';
import { type AgentProcess, createContainer, eventually, startBusyboxPod, type TestNode } from '../lib/agent.js';
import { type CertFiles, kubeletGet, makeCA, makeClientCert } from '../lib/kubelet_certs.js';
import { httpsUpgrade, SpdyClient, websocketBytes } from '../lib/spdy_client.js';

// The kubelet API against the real agent: a pod made through the CRI with
// the labels kubelet puts on it, the kubelet API server in this process on
// the agent's CRI socket (as the node half runs it), a client CA and a
// client certificate made with openssl. Logs, exec and port-forward reach
// the pod through the runtime's streaming server, proxied.

describe('the kubelet API on a real node', () => {
  let node: TestNode;
  let agent: AgentProcess;
  let cri: CriClients;
  let server: KubeletServer;
  let base: string;
  let serverCA: string;
  let admin: CertFiles;
  let log = '';

  const get = (path: string): ReturnType<typeof kubeletGet> => kubeletGet(`${base}${path}`, { serverCA, client: admin });
  const tlsOptions = async (): Promise<{ ca: Buffer; cert: Buffer; key: Buffer }> => ({
    ca: await readFile(serverCA),
    cert: await readFile(admin.cert),
    key: await readFile(admin.key),
  });

  const appId = async (): Promise<string> => {
    const r = await node.crictl(['ps', '-q', '--label', 'io.kubernetes.container.name=app']);
    return r.stdout.trim();
  };

  let container: (name: string, script: string, attempt?: number, extra?: Record<string, unknown>) => Promise<string>;

  before(async () => {
    let busybox: string;
    let pod: string;
    let podFile: string;
    ({ node, agent, busybox, pod, podFile } = await startBusyboxPod((dir) => ({
      metadata: { name: 'web', namespace: 'shop', uid: 'web-uid-1', attempt: 0 },
      labels: { 'io.kubernetes.pod.name': 'web', 'io.kubernetes.pod.namespace': 'shop', 'io.kubernetes.pod.uid': 'web-uid-1', app: 'web' },
      log_directory: join(dir, 'pod-logs'),
      linux: {},
    })));
    container = async (name: string, script: string, attempt = 0, extra: Record<string, unknown> = {}): Promise<string> => {
      const id = await createContainer(node, pod, podFile, {
        metadata: { name, attempt },
        labels: { 'io.kubernetes.container.name': name, 'io.kubernetes.pod.uid': 'web-uid-1' },
        image: { image: busybox },
        command: ['sh', '-c', script],
        log_path: `${name}/${attempt}.log`,
        linux: {},
        ...extra,
      });
      assert.equal((await node.crictl(['start', id])).code, 0);
      return id;
    };
    // stderr first (its own pipe: no interleaving to race), three lines; one more each time /tmp/go appears; some work for the CPU numbers.
    await container('app', 'echo oops >&2; sleep 0.3; echo first; echo second; echo third; while true; do if [ -f /tmp/go ]; then echo written-later; rm /tmp/go; fi; i=0; while [ $i -lt 2000 ]; do i=$((i+1)); done; sleep 0.2; done');
    await container('shell', 'exec sh', 0, { stdin: true });
    await container('httpd', 'mkdir -p /www && echo "hello through the kubelet" > /www/index.html && exec httpd -f -p 127.0.0.1:8080 -h /www');

    const certs = join(node.dir, 'certs');
    await mkdir(certs, { recursive: true });
    const ca = await makeCA(certs, 'client-ca');
    admin = await makeClientCert(certs, ca, 'kube-apiserver-kubelet-client', ['system:masters']);
    cri = criClients(node.socket);
    server = await serveKubeletApi({
      host: '127.0.0.1',
      port: 0,
      tls: { pkiDir: join(node.dir, 'kubelet-pki') },
      clientCAFile: ca.cert,
      anonymous: false,
      nodeName: 'test-node',
      cri,
      pods: () => [],
      metrics: {
        node: async () => ({ contentType: 'text/plain', body: '' }),
        cadvisor: async () => ({ contentType: 'text/plain', body: '' }),
        resource: async () => ({ contentType: 'text/plain', body: '' }),
      },
      log: createLogger({ level: 'debug', component: 'kubelet-api', write: (l) => void (log += l) }),
    });
    base = `https://127.0.0.1:${server.port}`;
    serverCA = join(node.dir, 'kubelet-pki', 'kubelet.crt');
  });

  after(async () => {
    await server?.close();
    cri?.close();
    agent?.child.kill('SIGTERM');
    await node?.destroy();
  });

  it('refuses a caller without credentials (401) and answers /healthz to one with a certificate', async () => {
    const anon = await kubeletGet(`${base}/containerLogs/shop/web/app`, { serverCA });
    assert.equal(anon.status, 401);
    assert.doesNotMatch(anon.body, /first/);
    const ok = await get('/healthz');
    assert.equal(ok.status, 200);
    assert.equal(ok.body, 'ok');
  });

  it('serves the container log: tailLines, timestamps, streams, and a precise 404 or 400', async () => {
    const all = await eventually('the log', async () => {
      const r = await get('/containerLogs/shop/web/app');
      return r.body.includes('third') ? r : undefined;
    });
    assert.equal(all.status, 200);
    assert.equal(all.body, 'oops\nfirst\nsecond\nthird\n');
    assert.equal((await get('/containerLogs/shop/web/app?tailLines=2')).body, 'second\nthird\n');
    assert.equal((await get('/containerLogs/shop/web/app?stream=Stderr')).body, 'oops\n');
    assert.equal((await get('/containerLogs/shop/web/app?limitBytes=8')).body, 'oops\nfir');
    const stamped = (await get('/containerLogs/shop/web/app?tailLines=1&timestamps=true')).body;
    assert.match(stamped, /^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d+)?(Z|[+-]\d{2}:\d{2}) third\n$/);
    const noPod = await get('/containerLogs/shop/nope/app');
    assert.equal(noPod.status, 404);
    assert.match(noPod.body, /pod "nope" in namespace "shop" not found/);
    const noContainer = await get('/containerLogs/shop/web/nope');
    assert.equal(noContainer.status, 404);
    assert.match(noContainer.body, /container "nope" not found in pod "web"/);
    const badParam = await get('/containerLogs/shop/web/app?tailLines=-3');
    assert.equal(badParam.status, 400);
    assert.match(badParam.body, /^tailLines: /);
    const previous = await get('/containerLogs/shop/web/app?previous=true');
    assert.equal(previous.status, 400);
    assert.match(previous.body, /previous terminated container "app"/);
  });

  it('follows the log: a line written later arrives on the open response', async () => {
    const tls = await tlsOptions();
    let got = '';
    const req = request(`${base}/containerLogs/shop/web/app?follow=true&tailLines=1`, { ...tls, agent: false });
    const answered = new Promise<number>((resolve, reject) => {
      req.on('response', (res) => {
        res.setEncoding('utf8');
        res.on('data', (d: string) => (got += d));
        resolve(res.statusCode ?? 0);
      });
      req.on('error', reject);
    });
    req.end();
    try {
      assert.equal(await answered, 200);
      await eventually('the tail', async () => (got === 'third\n' ? true : undefined), 10000);
      assert.equal((await node.crictl(['exec', '--sync', await appId(), 'touch', '/tmp/go'])).code, 0);
      await eventually('the later line', async () => (got === 'third\nwritten-later\n' ? true : undefined), 15000);
    } finally {
      req.destroy();
    }
  });

  it('exec over a WebSocket (v5.channel.k8s.io) through the proxy: output and the exit code', async () => {
    const tls = await tlsOptions();
    const q = new URLSearchParams([
      ['command', 'sh'],
      ['command', '-c'],
      ['command', 'echo "in $(hostname)"; echo err >&2; exit 3'],
      ['output', '1'],
      ['error', '1'],
    ]);
    const got = await new Promise<{ protocol: string; stdout: string; stderr: string; status: string }>((resolve, reject) => {
      const ws = new WebSocket(`wss://127.0.0.1:${server.port}/exec/shop/web/app?${q}`, ['v5.channel.k8s.io'], tls);
      const out = { stdout: '', stderr: '', status: '' };
      ws.on('message', (d: Buffer) => {
        const text = d.subarray(1).toString();
        if (d[0] === 1) out.stdout += text;
        if (d[0] === 2) out.stderr += text;
        if (d[0] === 3) out.status += text;
      });
      ws.on('close', () => resolve({ protocol: ws.protocol, ...out }));
      ws.on('unexpected-response', (_q, res) => reject(new Error(`HTTP ${res.statusCode}`)));
      ws.on('error', reject);
    });
    assert.equal(got.protocol, 'v5.channel.k8s.io');
    assert.match(got.stdout, /^in \S+\n$/);
    assert.equal(got.stderr, 'err\n');
    const st = JSON.parse(got.status) as { reason: string; details: { causes: Array<{ message: string }> } };
    assert.equal(st.reason, 'NonZeroExitCode');
    assert.equal(st.details.causes[0]?.message, '3');
  });

  it('exec over SPDY/3.1 (a POST, as kubectl sends it): the protocol is negotiated through the proxy', async () => {
    const tls = await tlsOptions();
    const q = new URLSearchParams([
      ['command', 'echo'],
      ['command', 'spdy says hi'],
      ['output', '1'],
    ]);
    const up = await httpsUpgrade({ host: '127.0.0.1', port: server.port, ...tls }, 'POST', `/exec/shop/web/app?${q}`, {
      Connection: 'Upgrade',
      Upgrade: 'SPDY/3.1',
      'X-Stream-Protocol-Version': 'v4.channel.k8s.io',
    });
    assert.equal(up.status, 101, up.body);
    assert.equal(up.headers['x-stream-protocol-version'], 'v4.channel.k8s.io');
    const spdy = new SpdyClient(up.socket, up.rest);
    try {
      const error = await spdy.open({ streamtype: 'error' });
      const stdout = await spdy.open({ streamtype: 'stdout' });
      assert.equal(await stdout.text(), 'spdy says hi\n');
      assert.match(await error.text(), /"status":"Success"/);
    } finally {
      spdy.close();
    }
  });

  it('exec stdin through the proxy into a command that never reads: the proxy (this process) and the runtime hold it back, not buffer it', async () => {
    const tls = await tlsOptions();
    const q = new URLSearchParams([['command', 'sleep'], ['command', '3600'], ['input', '1'], ['output', '1']]);
    const up = await httpsUpgrade({ host: '127.0.0.1', port: server.port, ...tls }, 'POST', `/exec/shop/web/app?${q}`, {
      Connection: 'Upgrade',
      Upgrade: 'SPDY/3.1',
      'X-Stream-Protocol-Version': 'v4.channel.k8s.io',
    });
    assert.equal(up.status, 101, up.body);
    const spdy = new SpdyClient(up.socket, up.rest);
    const runtimePid = Number.parseInt(await readFile(join(node.runtimeDir, 'runtime.pid'), 'utf8'), 10);
    const rss = async (pid: number): Promise<number> => Number(/^VmRSS:\s+(\d+) kB$/m.exec(await readFile(`/proc/${pid}/status`, 'utf8'))?.[1] ?? 0) / 1024;
    try {
      await spdy.open({ streamtype: 'error' });
      const stdin = await spdy.open({ streamtype: 'stdin' });
      (await spdy.open({ streamtype: 'stdout' })).text().catch(() => undefined);
      await new Promise((r) => setTimeout(r, 300));
      const base = { proxy: process.memoryUsage().rss / 1048576, runtime: await rss(runtimePid) };
      // 10 s of 32 KiB DATA frames as fast as the socket takes them (this client keeps to TCP's backpressure, as spdystream does).
      const frame = Buffer.alloc(8 + 32 * 1024);
      frame.writeUInt32BE(stdin.id, 0);
      frame.writeUInt32BE(32 * 1024, 4);
      let sent = 0;
      const peak = { ...base };
      const sample = setInterval(() => {
        peak.proxy = Math.max(peak.proxy, process.memoryUsage().rss / 1048576);
        void rss(runtimePid).then((r) => (peak.runtime = Math.max(peak.runtime, r)), () => undefined);
      }, 250);
      try {
        const end = Date.now() + 10000;
        const timeUp = new Promise((r) => setTimeout(r, 10000));
        while (Date.now() < end) {
          sent += frame.length;
          if (!up.socket.write(frame)) await Promise.race([new Promise((r) => up.socket.once('drain', r)), timeUp]);
        }
      } finally {
        clearInterval(sample);
      }
      const grew = { proxy: peak.proxy - base.proxy, runtime: peak.runtime - base.runtime };
      assert.ok(grew.proxy < 64 && grew.runtime < 64, `stdin nobody reads grew the proxy by ${grew.proxy.toFixed(1)} MiB and the runtime by ${grew.runtime.toFixed(1)} MiB (${(sent / 1048576).toFixed(1)} MiB taken by the socket)`);
      assert.ok(sent < 128 * 1048576, `${(sent / 1048576).toFixed(1)} MiB were taken for a command that reads nothing`);
    } finally {
      spdy.close();
    }
  });

  it('port-forward over SPDY: the pod\'s loopback httpd answers; a closed port comes back on the error stream', async () => {
    const tls = await tlsOptions();
    const up = await httpsUpgrade({ host: '127.0.0.1', port: server.port, ...tls }, 'POST', '/portForward/shop/web', {
      Connection: 'Upgrade',
      Upgrade: 'SPDY/3.1',
      'X-Stream-Protocol-Version': 'portforward.k8s.io',
    });
    assert.equal(up.status, 101, up.body);
    const spdy = new SpdyClient(up.socket, up.rest);
    try {
      const page = await eventually('the forwarded page', async () => {
        const id = String(Math.floor(Math.random() * 1e6));
        const error = await spdy.open({ streamtype: 'error', port: '8080', requestid: id });
        const data = await spdy.open({ streamtype: 'data', port: '8080', requestid: id });
        // The request, then our half closed, as a client done sending does.
        data.write('GET / HTTP/1.0\r\nHost: pod\r\n\r\n', true);
        const body = await data.text();
        const err = await error.text();
        return body.includes('200 OK') ? { body, err } : undefined;
      });
      assert.match(page.body, /hello through the kubelet\n$/);
      assert.equal(page.err, '');
      const error = await spdy.open({ streamtype: 'error', port: '9', requestid: 'closed' });
      const data = await spdy.open({ streamtype: 'data', port: '9', requestid: 'closed' });
      assert.match(await error.text(), /an error occurred forwarding 9 -> 9: .*refused/i);
      await data.text();
    } finally {
      spdy.close();
    }
  });

  it('port-forward over a WebSocket with SPDY inside (SPDY/3.1+portforward.k8s.io, kubectl\'s default since 1.31)', async () => {
    const tls = await tlsOptions();
    const up = await httpsUpgrade({ host: '127.0.0.1', port: server.port, ...tls }, 'GET', '/portForward/shop/web', {
      Connection: 'Upgrade',
      Upgrade: 'websocket',
      'Sec-WebSocket-Version': '13',
      'Sec-WebSocket-Key': randomBytes(16).toString('base64'),
      'Sec-WebSocket-Protocol': 'SPDY/3.1+portforward.k8s.io',
    });
    assert.equal(up.status, 101, up.body);
    assert.equal(up.headers['sec-websocket-protocol'], 'SPDY/3.1+portforward.k8s.io');
    const spdy = new SpdyClient(websocketBytes(up.socket, up.rest));
    try {
      const body = await eventually('the forwarded page', async () => {
        const id = String(Math.floor(Math.random() * 1e6));
        await spdy.open({ streamtype: 'error', port: '8080', requestid: id });
        const data = await spdy.open({ streamtype: 'data', port: '8080', requestid: id });
        data.write('GET / HTTP/1.0\r\nHost: pod\r\n\r\n', true);
        const text = await data.text();
        return text.includes('200 OK') ? text : undefined;
      });
      assert.match(body, /hello through the kubelet\n$/);
    } finally {
      spdy.close();
    }
  });

  it("attach over a WebSocket: the container's own shell reads our stdin", async () => {
    const tls = await tlsOptions();
    const out = await new Promise<string>((resolve, reject) => {
      const ws = new WebSocket(`wss://127.0.0.1:${server.port}/attach/shop/web/shell?input=1&output=1&error=1`, ['v5.channel.k8s.io'], tls);
      let got = '';
      ws.on('open', () => ws.send(Buffer.concat([Buffer.from([0]), Buffer.from('echo attached $((6*7))\n')])));
      ws.on('message', (d: Buffer) => {
        if (d[0] === 1) got += d.subarray(1).toString();
        if (got.includes('attached 42')) {
          ws.close();
          resolve(got);
        }
      });
      ws.on('unexpected-response', (_q, res) => reject(new Error(`HTTP ${res.statusCode}`)));
      ws.on('error', reject);
    });
    assert.match(out, /attached 42\n/);
  });

  it('/run: the command\'s output in one answer (POST only)', async () => {
    const r = await kubeletGet(`${base}/run/shop/web/app?cmd=${encodeURIComponent('echo ran here')}`, { serverCA, client: admin, method: 'POST' });
    assert.equal(r.status, 200, r.body);
    assert.equal(r.body, 'ran here\n');
    assert.equal((await get('/run/shop/web/app?cmd=id')).status, 405);
  });

  it('/run: a client that leaves takes its command with it', async () => {
    const tls = await tlsOptions();
    const running = async (): Promise<boolean> => {
      const r = await node.crictl(['exec', '--sync', await appId(), 'sh', '-c', 'ps -o args | grep "^sleep 986" || true']);
      return r.stdout.trim() !== '';
    };
    const req = request({ host: '127.0.0.1', port: server.port, path: `/run/shop/web/app?cmd=${encodeURIComponent('sleep 986')}`, method: 'POST', ...tls });
    req.on('error', () => undefined);
    req.end();
    await eventually('the /run command to run', async () => ((await running()) ? true : undefined));
    req.destroy();
    await eventually('the /run command to be gone', async () => ((await running()) ? undefined : true));
  });

  it('refuses a streaming upgrade without credentials, and a plain GET of /exec learns it needs one', async () => {
    const up = await httpsUpgrade({ host: '127.0.0.1', port: server.port, ca: await readFile(serverCA) }, 'POST', '/exec/shop/web/app?command=id&output=1', {
      Connection: 'Upgrade',
      Upgrade: 'SPDY/3.1',
      'X-Stream-Protocol-Version': 'v4.channel.k8s.io',
    });
    assert.equal(up.status, 401);
    const plain = await get('/exec/shop/web/app?command=id&output=1');
    assert.equal(plain.status, 400);
    assert.match(plain.body, /Upgrade request required/);
  });

  it('/stats/summary: the node and the pod with its containers, CPU and memory not zero', async () => {
    type Summary = {
      node: { nodeName: string; cpu: { usageCoreNanoSeconds: number }; memory: { workingSetBytes: number }; fs: { capacityBytes: number }; runtime: { imageFs: { usedBytes: number } } };
      pods: Array<{ podRef: { name: string; namespace: string; uid: string }; cpu?: { usageCoreNanoSeconds?: number }; memory?: { workingSetBytes?: number }; containers: Array<{ name: string; cpu?: { usageCoreNanoSeconds?: number; usageNanoCores?: number }; memory?: { workingSetBytes?: number }; rootfs?: object; logs?: { usedBytes?: number } }> }>;
    };
    const s = await eventually('a summary with the pod and a CPU rate', async () => {
      const r = JSON.parse((await get('/stats/summary')).body) as Summary;
      const app = r.pods.find((p) => p.podRef.name === 'web')?.containers.find((c) => c.name === 'app');
      return app?.cpu?.usageNanoCores !== undefined ? r : undefined;
    });
    assert.equal(s.node.nodeName, 'test-node');
    assert.ok(s.node.cpu.usageCoreNanoSeconds > 0);
    assert.ok(s.node.memory.workingSetBytes > 0);
    assert.ok(s.node.fs.capacityBytes > 0);
    assert.ok(s.node.runtime.imageFs.usedBytes > 0, 'the busybox image takes no room');
    const pod = s.pods.find((p) => p.podRef.name === 'web')!;
    assert.deepEqual(pod.podRef, { name: 'web', namespace: 'shop', uid: 'web-uid-1' });
    assert.deepEqual(pod.containers.map((c) => c.name).sort(), ['app', 'httpd', 'shell']);
    const app = pod.containers.find((c) => c.name === 'app')!;
    assert.ok((app.cpu?.usageCoreNanoSeconds ?? 0) > 0, JSON.stringify(app));
    assert.ok((app.memory?.workingSetBytes ?? 0) > 0, JSON.stringify(app));
    assert.ok((app.logs?.usedBytes ?? 0) > 0, JSON.stringify(app));
    assert.ok((pod.cpu?.usageCoreNanoSeconds ?? 0) > 0);
    assert.ok((pod.memory?.workingSetBytes ?? 0) > 0);
  });

  it('ends following when the container exits; previous=true reads the attempt before the current one', async () => {
    await container('brief', 'echo one; sleep 2; echo two');
    const followed = await get('/containerLogs/shop/web/brief?follow=true');
    assert.equal(followed.status, 200);
    assert.equal(followed.body, 'one\ntwo\n');
    await container('brief', 'echo again; exec sleep 1000', 1);
    const current = await eventually('the second attempt\'s log', async () => {
      const r = await get('/containerLogs/shop/web/brief');
      return r.body === '' ? undefined : r.body;
    });
    assert.equal(current, 'again\n');
    assert.equal((await get('/containerLogs/shop/web/brief?previous=true')).body, 'one\ntwo\n');
  });

  it('logged nothing it should not have: no failed requests', () => {
    assert.doesNotMatch(log, /request failed/, log);
  });
});
