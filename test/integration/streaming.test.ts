import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { after, before, describe, it } from 'node:test';

import { WebSocket } from 'ws';

import { criClients } from '../../proto/client.js';
import { type AgentProcess, createContainer, eventually, exec, freePort, startBusyboxPod, type TestNode } from '../lib/agent.js';

// Exec, Attach and PortForward end to end: the real agent, the real crictl
// (SPDY, its default, and WebSocket with -r websocket) on the user's host,
// talking to the streaming URL the runtime hands out.

const transports = ['spdy', 'websocket'] as const;

describe('usernode streaming: exec, attach, port-forward over SPDY and WebSocket', () => {
  let node: TestNode;
  let agent: AgentProcess;
  let pod: string;
  let podFile: string;
  let busybox: string;
  let sleeper: string;

  before(async () => {
    ({ node, agent, busybox, pod, podFile } = await startBusyboxPod(() => ({ metadata: { name: 'streams', namespace: 'default', uid: 'streams-uid', attempt: 0 }, linux: {} })));
    sleeper = await createContainer(node, pod, podFile, { metadata: { name: 'sleeper' }, image: { image: busybox }, command: ['sleep', '3000'], linux: {} });
    assert.equal((await node.crictl(['start', sleeper])).code, 0);
  });

  after(async () => {
    agent?.child.kill('SIGTERM');
    await node?.destroy();
  });

  /** crictl with `input` on its stdin. */
  const crictlIn = (args: string[], input: string): Promise<{ code: number | null; stdout: string; stderr: string }> =>
    exec(node.crictlPath, ['--runtime-endpoint', `unix://${node.socket}`, ...args], { env: node.env, input });

  for (const tr of transports) {
    it(`exec (${tr}): stdin in, stdout and stderr apart, the exit code out; a missing command is 127`, async () => {
      const r = await crictlIn(['exec', '-i', '-r', tr, sleeper, 'sh', '-c', 'read line; echo "got $line"; echo oops >&2; exit 3'], 'hello there\n');
      assert.equal(r.stdout, 'got hello there\n');
      assert.match(r.stderr, /^oops$/m);
      assert.match(r.stderr, /command terminated with exit code 3/);
      const big = await crictlIn(['exec', '-i', '-r', tr, sleeper, 'wc', '-c'], 'x'.repeat(3 * 1024 * 1024));
      assert.equal(big.stdout.trim(), String(3 * 1024 * 1024), 'stdin was not carried whole');
      const missing = await crictlIn(['exec', '-r', tr, sleeper, '/no/such/command'], '');
      assert.match(missing.stderr, /exit code 127/, missing.stderr);
    });

    it(`exec -it (${tr}): a terminal in the container, sized as the client's`, async () => {
      // crictl wants a terminal of its own: util-linux script gives it one, 33x91.
      const inner = `stty rows 33 cols 91; exec '${node.crictlPath}' --runtime-endpoint 'unix://${node.socket}' exec -it -r ${tr} ${sleeper} sh -c 'sleep 1; tty; stty size' 2>/dev/null`;
      const r = await exec('script', ['-q', '-e', '-c', inner, '/dev/null'], { env: node.env, input: '' , timeoutMs: 60000 });
      assert.match(r.stdout, /\/dev\/pts\/\d+/, r.stdout);
      assert.match(r.stdout, /^33 91\r?$/m, `the terminal was not resized: ${r.stdout}`);
    });

    it(`port-forward (${tr}): a busybox httpd on the pod's loopback answers through the forwarded port; a closed port is an error`, async () => {
      const web = await createContainer(node, pod, podFile, {
        metadata: { name: `web-${tr}` },
        image: { image: busybox },
        command: ['sh', '-c', `mkdir -p /www && echo "hello over ${tr}" > /www/index.html && exec httpd -f -p 127.0.0.1:${tr === 'spdy' ? 8081 : 8082} -h /www`],
        linux: {},
      });
      assert.equal((await node.crictl(['start', web])).code, 0);
      const local = await freePort();
      const pf = spawn(node.crictlPath, ['--runtime-endpoint', `unix://${node.socket}`, 'port-forward', '-r', tr, pod, `${local}:${tr === 'spdy' ? 8081 : 8082}`], { env: node.env, stdio: ['ignore', 'pipe', 'pipe'] });
      try {
        const body = await eventually('the forwarded page', async () => {
          const res = await fetch(`http://127.0.0.1:${local}/`, { signal: AbortSignal.timeout(5000) });
          return res.status === 200 ? res.text() : undefined;
        });
        assert.equal(body, `hello over ${tr}\n`);
        // Several connections at once, each its own stream pair.
        const many = await Promise.all(Array.from({ length: 8 }, () => fetch(`http://127.0.0.1:${local}/`).then((r) => r.text())));
        assert.deepEqual(many, Array.from({ length: 8 }, () => `hello over ${tr}\n`));
      } finally {
        pf.kill();
      }
      const closedLocal = await freePort();
      let stderr = '';
      const closed = spawn(node.crictlPath, ['--runtime-endpoint', `unix://${node.socket}`, 'port-forward', '-r', tr, pod, `${closedLocal}:9`], { env: node.env, stdio: ['ignore', 'pipe', 'pipe'] });
      closed.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
      try {
        // Connect until crictl listens; the pod's refusal comes back on the error stream.
        await eventually(
          'the error stream',
          async () => {
            await fetch(`http://127.0.0.1:${closedLocal}/`, { signal: AbortSignal.timeout(3000) }).catch(() => undefined);
            return /Connection refused/.test(stderr) ? true : undefined;
          },
          20000,
        );
      } finally {
        closed.kill();
      }
    });
  }

  it("attach: the container's own stdin and output", async () => {
    const sh = await createContainer(node, pod, podFile, { metadata: { name: 'attached' }, image: { image: busybox }, command: ['sh'], stdin: true, linux: {} });
    assert.equal((await node.crictl(['start', sh])).code, 0);
    for (const tr of transports) {
      const a = spawn(node.crictlPath, ['--runtime-endpoint', `unix://${node.socket}`, 'attach', '-i', '-r', tr, sh], { env: node.env, stdio: ['pipe', 'pipe', 'pipe'] });
      let out = '';
      a.stdout.on('data', (d: Buffer) => (out += d.toString()));
      try {
        await eventually(`the attach (${tr}) to answer`, async () => {
          a.stdin.write(`echo hello ${tr}\n`);
          await new Promise((r) => setTimeout(r, 300));
          return out.includes(`hello ${tr}`) ? true : undefined;
        });
      } finally {
        a.kill();
      }
    }
    // Leaving the attach leaves the container running.
    const st = JSON.parse((await node.crictl(['inspect', sh])).stdout) as { status: { state: string } };
    assert.equal(st.status.state, 'CONTAINER_RUNNING');
  });

  it('speaks every remote command version over WebSocket: v1 to v3 report the exit code as text, v4 and v5 as a Status', async () => {
    const clients = criClients(node.socket);
    try {
      for (const version of ['v5.channel.k8s.io', 'v4.channel.k8s.io', 'v3.channel.k8s.io', 'v2.channel.k8s.io', 'channel.k8s.io']) {
        const url = await new Promise<string>((res, rej) =>
          clients.runtime.Exec({ containerId: sleeper, cmd: ['sh', '-c', 'echo hi; exit 3'], stdout: true, stderr: true }, (e, r) => (e || !r ? rej(e) : res(r.url))),
        );
        const got = await new Promise<{ protocol: string; stdout: string; error: string }>((resolve, reject) => {
          const ws = new WebSocket(url.replace(/^http/, 'ws'), [version]);
          let stdout = '';
          let error = '';
          ws.on('message', (d: Buffer) => {
            if (d[0] === 1) stdout += d.subarray(1).toString();
            if (d[0] === 3) error += d.subarray(1).toString();
          });
          ws.on('close', () => resolve({ protocol: ws.protocol, stdout, error }));
          ws.on('error', reject);
        });
        assert.equal(got.protocol, version);
        assert.equal(got.stdout, 'hi\n', version);
        if (version.startsWith('v4') || version.startsWith('v5')) {
          const st = JSON.parse(got.error) as { reason: string; details: { causes: Array<{ reason: string; message: string }> } };
          assert.equal(st.reason, 'NonZeroExitCode', version);
          assert.deepEqual(st.details.causes, [{ reason: 'ExitCode', message: '3' }], version);
        } else {
          assert.match(got.error, /exit code: 3$/, version);
        }
      }
    } finally {
      clients.close();
    }
  });

  it('a client that vanishes mid-exec takes its command with it', async () => {
    const c = spawn(node.crictlPath, ['--runtime-endpoint', `unix://${node.socket}`, 'exec', sleeper, 'sleep', '987'], { env: node.env, stdio: 'ignore' });
    const running = (): Promise<string> => node.crictl(['exec', '--sync', sleeper, 'sh', '-c', 'ps -o args | grep "^sleep 987" || true']).then((r) => r.stdout.trim());
    await eventually('the exec to run', async () => ((await running()) !== '' ? true : undefined));
    c.kill('SIGKILL');
    await eventually('the command to be gone', async () => ((await running()) === '' ? true : undefined));
  });

  it('the runtime half served every stream above without a restart', () => {
    assert.doesNotMatch(agent.log, /runtime half exited/, agent.log.split('\n').filter((l) => /exited|Error/.test(l)).join('\n'));
  });

  it('a streaming URL works once: replayed or made up, it is 404 and runs nothing', async () => {
    const clients = criClients(node.socket);
    try {
      const url = await new Promise<string>((res, rej) =>
        clients.runtime.Exec({ containerId: sleeper, cmd: ['sh', '-c', 'echo ran >> /tmp/ran'], stdout: true }, (e, r) => (e || !r ? rej(e) : res(r.url))),
      );
      const connect = (u: string): Promise<number> =>
        new Promise((resolve) => {
          const ws = new WebSocket(u, ['v5.channel.k8s.io']);
          ws.on('unexpected-response', (_req, res) => resolve(res.statusCode ?? 0));
          ws.on('open', () => ws.on('close', () => resolve(101)));
          ws.on('error', () => resolve(-1));
        });
      assert.equal(await connect(url.replace(/^http/, 'ws')), 101);
      assert.equal(await connect(url.replace(/^http/, 'ws')), 404);
      assert.equal(await connect(url.replace(/^http/, 'ws').replace(/[^/]+$/, 'AAAAAAAAAAAAAAAAAAAAAA')), 404);
      const ran = await node.crictl(['exec', '--sync', sleeper, 'cat', '/tmp/ran']);
      assert.equal(ran.stdout.split('\n').filter((l) => l === 'ran').length, 1, `the command ran other than once: ${JSON.stringify(ran.stdout)}`);
      const unknown = await new Promise<{ code?: number }>((res) => clients.runtime.Exec({ containerId: 'nope', cmd: ['true'], stdout: true }, (e) => res(e ?? {})));
      assert.equal(unknown.code, 5, 'an unknown container is not NOT_FOUND');
    } finally {
      clients.close();
    }
  });
});
