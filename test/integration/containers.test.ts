import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { writeFile } from 'node:fs/promises';
import { createServer, type AddressInfo } from 'node:net';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';

import { criClients } from '../../proto/client.js';
import { type AgentProcess, eventually, nodeWithBusybox, processesOf, type TestNode } from '../lib/agent.js';

// Containers end to end: the real agent as this user, real runc under real
// conmon, in a real pod on the bridge, from an image pulled from the test
// registry; crictl drives it as a user would.

async function freePort(): Promise<number> {
  const s = createServer();
  await new Promise<void>((r) => s.listen(0, '127.0.0.1', r));
  const port = (s.address() as AddressInfo).port;
  await new Promise<void>((r) => s.close(() => r()));
  return port;
}

interface Inspect {
  status: { state: string; exitCode: number; reason: string; logPath: string; startedAt: string; finishedAt: string };
}

describe('usernode containers: create, start, logs, stop, remove, restarts', () => {
  let node: TestNode;
  let agent: AgentProcess;
  let pod: string;
  let podFile: string;
  let busybox: string;
  let seq = 0;

  const create = async (name: string, command: string[], extra: Record<string, unknown> = {}): Promise<string> => {
    const f = join(node.dir, `ctr-${name}-${seq++}.json`);
    await writeFile(f, JSON.stringify({ metadata: { name }, image: { image: busybox }, command, log_path: `${name}/0.log`, linux: {}, ...extra }));
    const r = await node.crictl(['create', pod, f, podFile]);
    assert.equal(r.code, 0, r.stderr);
    return r.stdout.trim();
  };
  const inspect = async (id: string): Promise<Inspect> => {
    const r = await node.crictl(['inspect', id]);
    assert.equal(r.code, 0, r.stderr);
    return JSON.parse(r.stdout) as Inspect;
  };

  before(async () => {
    ({ node, agent, busybox } = await nodeWithBusybox());
    podFile = join(node.dir, 'pod.json');
    await writeFile(podFile, JSON.stringify({ metadata: { name: 'box', namespace: 'default', uid: 'box-uid', attempt: 0 }, hostname: 'boxhost', log_directory: join(node.dir, 'logs'), linux: {} }));
    const r = await node.crictl(['runp', podFile]);
    assert.equal(r.code, 0, r.stderr);
    pod = r.stdout.trim();
  });

  after(async () => {
    agent?.child.kill('SIGTERM');
    await node?.destroy();
  });

  it("runs a container in the pod's namespaces, and its output is in the CRI log", async () => {
    const id = await create('hello', ['sh', '-c', 'echo "out $(hostname) $(ip -4 -o addr show eth0 | wc -l)"; echo err >&2; sleep 300']);
    assert.equal((await inspect(id)).status.state, 'CONTAINER_CREATED');
    assert.equal((await node.crictl(['start', id])).code, 0);
    assert.equal((await inspect(id)).status.state, 'CONTAINER_RUNNING');
    const logs = await eventually('the container output', async () => {
      const r = await node.crictl(['logs', id]);
      return r.stdout.includes('out ') ? r : undefined;
    });
    assert.match(logs.stdout, /^out boxhost 1$/m, 'not the pod hostname or no eth0');
    assert.match(logs.stderr, /^err$/m);
    const raw = readFileSync((await inspect(id)).status.logPath, 'utf8');
    assert.match(raw, /^\S+ stdout F out boxhost 1$/m, 'the log file is not in the CRI format');
  });

  it('runs commands in a running container with exec: output, exit codes, 127 for a missing command, timeouts', async () => {
    const id = await create('exec-target', ['sleep', '300']);
    assert.equal((await node.crictl(['start', id])).code, 0);
    const ok = await node.crictl(['exec', '--sync', id, 'sh', '-c', 'echo inside $(hostname); exit 0']);
    assert.equal(ok.code, 0, ok.stderr);
    assert.equal(ok.stdout.trim(), 'inside boxhost');
    // crictl folds every non-zero code into 1; the CRI answer has the real one.
    const c = criClients(node.socket);
    try {
      const exec = (cmd: string[]): Promise<{ stdout: Buffer; stderr: Buffer; exitCode: number }> =>
        new Promise((res, rej) => c.runtime.ExecSync({ containerId: id, cmd, timeout: 10 }, (e, r) => (e || !r ? rej(e) : res(r))));
      const fail = await exec(['sh', '-c', 'echo oops >&2; exit 5']);
      assert.equal(fail.exitCode, 5);
      assert.equal(fail.stderr.toString(), 'oops\n');
      const missing = await exec(['/no/such/command']);
      assert.equal(missing.exitCode, 127, missing.stderr.toString());
    } finally {
      c.close();
    }
    const slow = await node.crictl(['exec', '--sync', '--timeout', '1', id, 'sleep', '30']);
    assert.notEqual(slow.code, 0);
    assert.match(slow.stderr, /DeadlineExceeded|timed out/);
  });

  it('records the exit code of a container that ends by itself', async () => {
    const id = await create('quitter', ['sh', '-c', 'exit 3']);
    assert.equal((await node.crictl(['start', id])).code, 0);
    const s = await eventually('the exit', async () => {
      const x = await inspect(id);
      return x.status.state === 'CONTAINER_EXITED' ? x : undefined;
    });
    assert.equal(s.status.exitCode, 3);
    assert.equal(s.status.reason, 'Error');
    assert.ok(Date.parse(s.status.finishedAt) >= Date.parse(s.status.startedAt), `finished ${s.status.finishedAt} before started ${s.status.startedAt}`);
  });

  it('keeps containers running across an agent restart, and learns of exits that happened while it was down', async () => {
    const runner = await create('runner', ['sleep', '300']);
    const short = await create('short', ['sh', '-c', 'sleep 2; exit 0']);
    assert.equal((await node.crictl(['start', runner])).code, 0);
    assert.equal((await node.crictl(['start', short])).code, 0);
    agent.child.kill('SIGKILL');
    await agent.exited;
    const rt = Number(readFileSync(join(node.runtimeDir, 'runtime.pid'), 'utf8'));
    process.kill(rt, 'SIGKILL');
    await new Promise((r) => setTimeout(r, 3000));
    agent = node.start();
    await agent.ready();
    assert.equal((await inspect(runner)).status.state, 'CONTAINER_RUNNING');
    const s = await inspect(short);
    assert.equal(s.status.state, 'CONTAINER_EXITED');
    assert.equal(s.status.exitCode, 0);
    assert.equal(s.status.reason, 'Completed');
  });

  it('stops with SIGTERM then SIGKILL after the timeout, and removes without a trace', async () => {
    const id = await create('stubborn', ['sh', '-c', 'trap "" TERM; sleep 300']);
    assert.equal((await node.crictl(['start', id])).code, 0);
    const t0 = Date.now();
    assert.equal((await node.crictl(['stop', '-t', '1', id])).code, 0);
    assert.ok(Date.now() - t0 >= 900, 'SIGKILL came before the timeout');
    const s = await inspect(id);
    assert.equal(s.status.state, 'CONTAINER_EXITED');
    assert.equal(s.status.exitCode, 137);
    assert.equal((await node.crictl(['stop', id])).code, 0, 'stopping a stopped container failed');
    assert.equal((await node.crictl(['rm', id])).code, 0);
    const again = await node.crictl(['inspect', id]);
    assert.notEqual(again.code, 0);
    assert.match(again.stderr, /NotFound/);
    const mounts = await node.enter(['cat', '/proc/self/mountinfo']);
    assert.doesNotMatch(mounts.stdout, new RegExp(id), 'the rootfs is still mounted');
  });

  it('refuses a container for an image that is not on the node, naming it', async () => {
    const f = join(node.dir, 'noimage.json');
    await writeFile(f, JSON.stringify({ metadata: { name: 'ghost' }, image: { image: 'example.invalid/none:1' }, command: ['true'] }));
    const r = await node.crictl(['create', '--no-pull', pod, f, podFile]);
    assert.notEqual(r.code, 0);
    assert.match(r.stderr, /NotFound.*example\.invalid\/none:1/);
  });

  it("serves a web pod's hostPort on the host: curl http://localhost:PORT answers (the seed's scenario)", async () => {
    const port = await freePort();
    const webPod = join(node.dir, 'web-pod.json');
    await writeFile(webPod, JSON.stringify({ metadata: { name: 'web', namespace: 'default', uid: 'web-uid', attempt: 0 }, hostname: 'web', log_directory: join(node.dir, 'logs'), port_mappings: [{ container_port: 80, host_port: port }], linux: {} }));
    const p = await node.crictl(['runp', webPod]);
    assert.equal(p.code, 0, p.stderr);
    const webId = p.stdout.trim();
    const f = join(node.dir, 'httpd.json');
    await writeFile(f, JSON.stringify({ metadata: { name: 'httpd' }, image: { image: busybox }, command: ['sh', '-c', 'mkdir -p /www && echo "hello from usernode" > /www/index.html && exec httpd -f -p 80 -h /www'], linux: {} }));
    const c = await node.crictl(['create', webId, f, webPod]);
    assert.equal(c.code, 0, c.stderr);
    assert.equal((await node.crictl(['start', c.stdout.trim()])).code, 0);
    const body = await eventually('the web server through the host port', async () => {
      const res = await fetch(`http://localhost:${port}/`).catch(() => undefined);
      return res?.ok ? res.text() : undefined;
    });
    assert.equal(body, 'hello from usernode\n');
    assert.equal((await node.crictl(['rmp', '-f', webId])).code, 0);
    await assert.rejects(fetch(`http://localhost:${port}/`), 'the host port still answers after the pod is gone');
  });

  it('refuses a host port the host already uses, naming it, and leaves no pod', async () => {
    const holder = createServer(() => {});
    await new Promise<void>((r) => holder.listen(0, '0.0.0.0', r));
    const port = (holder.address() as AddressInfo).port;
    try {
      const f = join(node.dir, 'taken-pod.json');
      await writeFile(f, JSON.stringify({ metadata: { name: 'taken', namespace: 'default', uid: 'taken-uid', attempt: 0 }, hostname: 'taken', port_mappings: [{ container_port: 80, host_port: port }], linux: {} }));
      const r = await node.crictl(['runp', f]);
      assert.notEqual(r.code, 0);
      assert.match(r.stderr, new RegExp(`AlreadyExists.*host port [^ ]*:${port}/tcp is already in use`));
      const pods = await node.crictl(['pods', '--name', 'taken', '-q']);
      assert.equal(pods.stdout.trim(), '');
    } finally {
      holder.close();
    }
  });

  it('removing the pod stops and removes its containers, and no conmon or container process is left', async () => {
    assert.equal((await node.crictl(['rmp', '-f', pod])).code, 0);
    const ps = await node.crictl(['ps', '-a', '-q']);
    assert.equal(ps.stdout.trim(), '');
    const left = (await processesOf()).filter((p) => p.comm === 'conmon' || p.comm === 'sleep' || p.comm === 'sh');
    // Only this node's: other checkouts may be testing as the same user at the same time (USERNODE_TEST_WORK).
    const mine = left.filter((p) => {
      try {
        return readFileSync(`/proc/${p.pid}/cmdline`, 'utf8').includes(node.dir);
      } catch {
        return false;
      }
    });
    assert.deepEqual(mine.filter((p) => p.comm === 'conmon'), [], 'conmon processes left');
  });
});
