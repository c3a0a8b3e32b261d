import assert from 'node:assert/strict';
import { mkdir, readdir, readFile, stat, writeFile } from 'node:fs/promises';
import { request } from 'node:https';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { gunzipSync } from 'node:zlib';

import { criClients, type CriClients } from '../../proto/client.js';
import { createLogger } from '../../pkg/log/logger.js';
import { parseCriLog } from '../../pkg/node/cri_log.js';
import { type KubeletServer, serveKubeletApi } from '../../pkg/node/kubelet_server.js';
import { type AgentProcess, createContainer, eventually, nodeWithBusybox, sleep, type TestNode } from '../lib/agent.js';
import { type CertFiles, kubeletGet, makeCA, makeClientCert } from '../lib/kubelet_certs.js';

// Container log rotation end to end, as kubelet does it: the real agent with
// containerLogMaxSize 64Ki, containerLogMaxFiles 3 and the shortest check
// interval kubelet allows (3s); a container that logs ~100 KB/s (1 KB lines,
// numbered, 10 ms apart — at most ~104 KB/s with the CRI prefix). Its node
// half renames the log and has the runtime reopen it (ReopenContainerLog,
// conmon); the kubelet API (in this process, on the agent's CRI socket)
// reads the current file as kubectl logs does, --tail=1 from its end, and a
// follower goes on across rotations without losing a line.

const maxSize = 64 * 1024;
const maxFiles = 3;
const intervalMs = 3000;
/** What the container can write in one check interval at most, twice over: the bound the current file keeps to. */
const slack = 2 * (intervalMs / 1000) * 104 * 1024;

describe('container log rotation by size and count', () => {
  let node: TestNode;
  let agent: AgentProcess;
  let cri: CriClients;
  let server: KubeletServer;
  let base: string;
  let serverCA: string;
  let admin: CertFiles;
  let logDir: string;
  let kubeletLog = '';

  const get = (path: string): ReturnType<typeof kubeletGet> => kubeletGet(`${base}${path}`, { serverCA, client: admin });
  const files = async (): Promise<string[]> => (await readdir(logDir)).filter((n) => n.startsWith('0.log')).sort();
  const numbers = (text: string): number[] => [...text.matchAll(/^line (\d+) x+$/gm)].map((m) => Number(m[1]));
  /** The number of the newest line in the current file. */
  const newestInFile = async (): Promise<number> => {
    // Between the rename and the reopen there is no file for a moment.
    const text = await eventually('the current log', () => readFile(join(logDir, '0.log'), 'utf8'), 5000);
    const all = numbers(parseCriLog(text).filter((l) => l.text.endsWith('\n')).map((l) => l.text).join(''));
    return all[all.length - 1] ?? -1;
  };

  before(async () => {
    let busybox: string;
    ({ node, agent, busybox } = await nodeWithBusybox());
    // Restart with the rotation settings (nodeWithBusybox wrote the registry's).
    agent.child.kill('SIGTERM');
    await agent.exited;
    const config = await readFile(join(node.dir, 'config', 'usernode', 'config.yaml'), 'utf8');
    await node.writeConfig(`${config}containerLogMaxSize: 64Ki\ncontainerLogMaxFiles: ${maxFiles}\ncontainerLogMonitorInterval: 3s\n`);
    agent = node.start();
    await agent.ready();

    const podFile = join(node.dir, 'pod.json');
    await writeFile(
      podFile,
      JSON.stringify({
        metadata: { name: 'chatty', namespace: 'logs', uid: 'chatty-uid', attempt: 0 },
        labels: { 'io.kubernetes.pod.name': 'chatty', 'io.kubernetes.pod.namespace': 'logs', 'io.kubernetes.pod.uid': 'chatty-uid' },
        log_directory: join(node.dir, 'pod-logs'),
        linux: {},
      }),
    );
    const runp = await node.crictl(['runp', podFile]);
    assert.equal(runp.code, 0, runp.stderr);
    const pad = 'x'.repeat(1000);
    const id = await createContainer(node, runp.stdout.trim(), podFile, {
      metadata: { name: 'app', attempt: 0 },
      labels: { 'io.kubernetes.container.name': 'app', 'io.kubernetes.pod.uid': 'chatty-uid' },
      image: { image: busybox },
      command: ['sh', '-c', `i=0; while true; do i=$((i+1)); echo "line $i ${pad}"; sleep 0.01; done`],
      log_path: 'app/0.log',
      linux: {},
    });
    assert.equal((await node.crictl(['start', id])).code, 0);
    logDir = join(node.dir, 'pod-logs', 'app');

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
      log: createLogger({ level: 'debug', component: 'kubelet-api', write: (l) => void (kubeletLog += l) }),
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

  it('rotates: at most containerLogMaxFiles files, the older ones gzipped, the current one within the size bound', async () => {
    // Two rotations at least: a compressed file exists.
    const seen = await eventually('a compressed rotated log', async () => ((await files()).some((n) => n.endsWith('.gz')) ? files() : undefined), 60000);
    assert.ok(seen.length <= maxFiles, seen.join(' '));
    for (let i = 0; i < 8; i++) {
      const names = await files();
      assert.ok(names.length <= maxFiles, `${names.length} log files: ${names.join(' ')}`);
      assert.ok(names.every((n) => /^0\.log(\.\d{8}-\d{6}(\.gz)?)?$/.test(n)), names.join(' '));
      const size = (await stat(join(logDir, '0.log')).catch(() => ({ size: 0 }))).size;
      assert.ok(size <= maxSize + slack, `the current log is ${size} bytes; the bound is ${maxSize} + ${slack} (two check intervals of writing)`);
      await sleep(1000);
    }
    // Every rotated file holds whole, consecutive lines of the container's output.
    const names = await files();
    const gz = names.find((n) => n.endsWith('.gz'));
    assert.ok(gz, names.join(' '));
    const inGz = numbers(
      parseCriLog(gunzipSync(await readFile(join(logDir, gz))).toString())
        .map((l) => l.text)
        .join(''),
    );
    assert.ok(inGz.length > 10);
    inGz.forEach((n, i) => i === 0 || assert.equal(n, inGz[i - 1]! + 1, 'a gap inside a rotated file'));
    assert.match(agent.log, /usernode is ready/);
    assert.doesNotMatch(agent.log, /cannot rotate/, agent.log.slice(-3000));
  });

  it('the container goes on writing to the reopened file; the kubelet API reads its newest lines, --tail=1 from the end', async () => {
    const before = await newestInFile();
    await eventually('more lines in the current file', async () => ((await newestInFile()) > before + 50 ? true : undefined), 20000);
    const floor = await newestInFile();
    const tail = await get('/containerLogs/logs/chatty/app?tailLines=1');
    assert.equal(tail.status, 200);
    const one = numbers(tail.body);
    assert.equal(one.length, 1, `--tail=1 gave ${JSON.stringify(tail.body.slice(0, 200))}`);
    assert.match(tail.body, /^line \d+ x{1000}\n$/);
    assert.ok(one[0]! >= floor, `--tail=1 gave line ${one[0]}, older than ${floor} already in the file`);
    const ten = numbers((await get('/containerLogs/logs/chatty/app?tailLines=10')).body);
    assert.equal(ten.length, 10);
    ten.forEach((n, i) => i === 0 || assert.equal(n, ten[i - 1]! + 1));
    // Without a tail: the current file (as kubelet reads it), whole consecutive lines up to the newest.
    const all = numbers((await get('/containerLogs/logs/chatty/app')).body);
    assert.ok(all.length > 0);
    assert.ok(all[0]! > 1, 'the log read from the top still has the first line: it was never rotated');
    assert.ok(all[all.length - 1]! >= floor);
    const limited = await get('/containerLogs/logs/chatty/app?limitBytes=100');
    assert.equal(Buffer.byteLength(limited.body), 100);
  });

  it('follows across rotations without losing or repeating a line', async () => {
    const startNames = await files();
    let got = '';
    const req = request(`${base}/containerLogs/logs/chatty/app?follow=true&tailLines=1`, { ca: await readFile(serverCA), cert: await readFile(admin.cert), key: await readFile(admin.key), agent: false });
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
      // Until the newest rotated file is another one than at the start: a rotation happened while following.
      const newest = (names: string[]): string | undefined => names.filter((n) => n !== '0.log').map((n) => n.replace(/\.gz$/, '')).sort().pop();
      await eventually('a rotation while following', async () => (newest(await files()) !== newest(startNames) ? true : undefined), 30000);
      await sleep(1500);
    } finally {
      req.destroy();
    }
    const lines = numbers(got.slice(0, got.lastIndexOf('\n') + 1));
    assert.ok(lines.length > 100, `followed only ${lines.length} lines`);
    lines.forEach((n, i) => i === 0 || assert.equal(n, lines[i - 1]! + 1, `line ${lines[i - 1]} was followed by ${n}`));
    assert.doesNotMatch(kubeletLog, /request failed/, kubeletLog);
  });
});
