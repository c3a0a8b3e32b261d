import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { readFile, readlink, stat } from 'node:fs/promises';
import { createServer, type AddressInfo } from 'node:net';
import { userInfo } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';

import * as grpc from '@grpc/grpc-js';

import { isAlive, processesOf } from '../../pkg/netns/procfs.js';
import { type AgentProcess, eventually, exec, requiredTool, TestNode } from '../lib/agent.js';

// The foundation, end to end, as a user sees it: `usernode run` as this
// (unprivileged) user makes the node namespace and serves the CRI; the real
// crictl and critest talk to it; `usernode enter` shows the namespace from
// inside; SIGTERM keeps the node namespace for the next run; `usernode stop`
// leaves nothing behind.

const me = userInfo();

function subidRange(file: string): { start: number; count: number } {
  const line = readFileSync(file, 'utf8')
    .split('\n')
    .map((l) => l.split(':'))
    .find((f) => f[0] === me.username || f[0] === String(me.uid));
  assert.ok(line, `${file} has no range for ${me.username}`);
  return { start: Number(line[1]), count: Number(line[2]) };
}

/** `connect(host, port)` from inside the node namespace: the first line the server sends, or "ERR <code>". */
async function connectFromInside(node: TestNode, host: string, port: number): Promise<string> {
  const script = `const s=require('net').connect(${port},${JSON.stringify(host)});let d='';s.setTimeout(3000,()=>{console.log('ERR ETIMEDOUT');process.exit(0)});s.on('data',c=>d+=c);s.on('end',()=>{console.log(d.trim());process.exit(0)});s.on('error',e=>{console.log('ERR '+e.code);process.exit(0)})`;
  const r = await node.enter([process.execPath, '-e', script]);
  assert.equal(r.code, 0, `usernode enter failed: ${r.stderr}`);
  return r.stdout.trim();
}

describe('usernode node: namespace, CRI server, lifecycle', () => {
  let node: TestNode;
  let agent: AgentProcess;

  before(async () => {
    node = await TestNode.create();
    agent = node.start();
    await agent.ready();
  });

  after(async () => {
    agent?.child.kill('SIGTERM');
    await node?.destroy();
  });

  it('answers the real crictl version as usernode over CRI v1', async () => {
    const r = await node.crictl(['version']);
    assert.equal(r.code, 0, r.stderr);
    assert.match(r.stdout, /RuntimeName:\s+usernode/);
    assert.match(r.stdout, /RuntimeApiVersion:\s+v1/);
  });

  it('reports RuntimeReady and NetworkReady in crictl info, with the node namespace and rootless limits', async () => {
    const r = await node.crictl(['info']);
    assert.equal(r.code, 0, r.stderr);
    const info = JSON.parse(r.stdout) as {
      status: { conditions: Array<{ type: string; status: boolean; reason: string }> };
      nodeNamespace: { holderPid: number; uidMap: number[][] };
      rootless: { cgroups: { mode: string; canEnforceLimits: boolean } };
    };
    const cond = Object.fromEntries(info.status.conditions.map((c) => [c.type, c.status]));
    assert.deepEqual(cond, { RuntimeReady: true, NetworkReady: true });
    assert.equal(info.nodeNamespace.holderPid, (await node.nodeNamespaceRecord()).holderPid);
    assert.equal(typeof info.rootless.cgroups.canEnforceLimits, 'boolean');
  });

  it("passes critest's runtime-info specs", async (t) => {
    const endpoint = `unix://${node.socket}`;
    const r = await exec(
      requiredTool('USERNODE_CRITEST'),
      ['--runtime-endpoint', endpoint, '--image-endpoint', endpoint, '--ginkgo.focus=Runtime info', '--ginkgo.no-color'],
      { env: node.env, timeoutMs: 300000 },
    );
    const summary = /Ran (\d+) of (\d+) Specs[\s\S]*?(\d+) Passed \| (\d+) Failed \| (\d+) Pending \| (\d+) Skipped/.exec(r.stdout);
    assert.ok(summary, `no critest summary in:\n${r.stdout}\n${r.stderr}`);
    t.diagnostic(`critest runtime info: ran ${summary[1]} of ${summary[2]}, passed ${summary[3]}, failed ${summary[4]}`);
    assert.equal(r.code, 0, r.stdout.slice(-3000));
    assert.ok(Number(summary[1]) >= 2, 'critest ran fewer than 2 runtime-info specs');
    assert.equal(summary[4], '0');
  });

  it('answers an RPC it has not built with UNIMPLEMENTED naming it, never a fake success', async () => {
    const r = await node.crictl(['checkpoint', '--export', join(node.dir, 'checkpoint.tar'), 'no-such-container']);
    assert.notEqual(r.code, 0);
    assert.match(r.stderr, /Unimplemented/);
    assert.match(r.stderr, /CheckpointContainer/);
  });

  it('answers a malformed request with INVALID_ARGUMENT and keeps serving', async () => {
    const client = new grpc.Client(`unix://${node.socket}`, grpc.credentials.createInsecure());
    const call = (bytes: Buffer): Promise<grpc.ServiceError | null> =>
      new Promise((resolve) =>
        client.makeUnaryRequest(
          '/runtime.v1.RuntimeService/Status',
          (b: Buffer) => b,
          (b: Buffer) => b,
          bytes,
          (err) => resolve(err),
        ),
      );
    // Field 1 (verbose, a varint) whose varint never ends.
    const err = await call(Buffer.from([0x08, 0xff, 0xff, 0xff]));
    assert.equal(err?.code, grpc.status.INVALID_ARGUMENT, String(err));
    assert.equal(await call(Buffer.alloc(0)), null);
    client.close();
  });

  it('keeps the CRI socket 0600 in a 0700 folder owned by the user', async () => {
    const s = await stat(node.socket);
    assert.ok(s.isSocket());
    assert.equal(s.mode & 0o777, 0o600);
    assert.equal(s.uid, me.uid);
    assert.equal((await stat(node.runtimeDir)).mode & 0o777, 0o700);
  });

  it('refuses a second instance for the same user with a clear message', async () => {
    const r = await node.usernode(['run']);
    assert.equal(r.code, 1);
    assert.match(r.stderr, /already running/);
    assert.match(r.stderr, new RegExp(`pid ${agent.pid}`));
    const v = await node.crictl(['version']);
    assert.equal(v.code, 0, 'the first agent stopped serving');
  });

  it("maps the node's uid 0 to the user and 1..65536 to the subuid range", async () => {
    const subuid = subidRange('/etc/subuid');
    const subgid = subidRange('/etc/subgid');
    const u = await node.enter(['cat', '/proc/self/uid_map']);
    assert.equal(u.code, 0, u.stderr);
    const rows = u.stdout.trim().split('\n').map((l) => l.trim().split(/\s+/).map(Number));
    assert.deepEqual(rows, [
      [0, me.uid, 1],
      [1, subuid.start, Math.min(65536, subuid.count)],
    ]);
    const g = await node.enter(['cat', '/proc/self/gid_map']);
    const grows = g.stdout.trim().split('\n').map((l) => l.trim().split(/\s+/).map(Number));
    assert.deepEqual(grows[1], [1, subgid.start, Math.min(65536, subgid.count)]);
    const id = await node.enter(['id', '-u']);
    assert.equal(id.stdout.trim(), '0');
  });

  it('has tap0 up inside, with the slirp4netns address, MTU 65520 and the default route', async () => {
    const addr = await node.enter(['ip', '-4', '-o', 'addr', 'show', 'tap0']);
    assert.equal(addr.code, 0, addr.stderr);
    assert.match(addr.stdout, /inet 10\.0\.2\.100\/24/);
    const link = await node.enter(['ip', '-o', 'link', 'show', 'tap0']);
    assert.match(link.stdout, /[<,]UP[,>]/);
    assert.match(link.stdout, /mtu 65520/);
    const route = await node.enter(['ip', 'route', 'show', 'default']);
    assert.match(route.stdout, /default via 10\.0\.2\.2 dev tap0/);
  });

  it('reaches a TCP server on the test host through slirp4netns', async (t) => {
    const target = process.env.USERNODE_TESTHOST;
    if (!target) {
      t.skip('no test host: creating its network namespace needs root (npm test as root, or sudo scripts/testhost.sh up)');
      return;
    }
    const [host, port] = target.split(':');
    const line = await connectFromInside(node, host!, Number(port));
    assert.match(line, /^usernode-testhost from /);
  });

  it("cannot reach the host's 127.0.0.1 from inside (--disable-host-loopback)", async () => {
    let connections = 0;
    const server = createServer((s) => {
      connections++;
      s.end('host-loopback\n');
    });
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
    const port = (server.address() as AddressInfo).port;
    try {
      // Control: the server answers on the host.
      const control = await exec(process.execPath, ['-e', `require('net').connect(${port},'127.0.0.1').on('data',d=>{process.stdout.write(d);process.exit(0)})`]);
      assert.equal(control.stdout.trim(), 'host-loopback');
      const seen = connections;
      // 10.0.2.2 is slirp4netns's gateway, which is the host's loopback unless disabled.
      assert.match(await connectFromInside(node, '10.0.2.2', port), /^ERR /);
      assert.match(await connectFromInside(node, '127.0.0.1', port), /^ERR ECONNREFUSED/);
      assert.equal(connections, seen, 'a connection from inside reached the host loopback server');
    } finally {
      server.close();
    }
  });

  it('restarts the runtime half when it dies, keeping the node namespace', async () => {
    const before = await node.nodeNamespaceRecord();
    const pidFile = join(node.runtimeDir, 'runtime.pid');
    const old = Number(await readFile(pidFile, 'utf8'));
    process.kill(old, 'SIGKILL');
    const fresh = await eventually('a new runtime half', async () => {
      const p = Number(await readFile(pidFile, 'utf8'));
      return p !== old && isAlive(p) ? p : undefined;
    });
    assert.notEqual(fresh, old);
    await eventually('crictl version after the restart', async () => ((await node.crictl(['version'])).code === 0 ? true : undefined));
    const afterRec = await node.nodeNamespaceRecord();
    assert.equal(afterRec.holderPid, before.holderPid);
    assert.ok(isAlive(agent.pid), 'the node half died with the runtime half');
  });

  it('on SIGTERM stops its own processes but keeps the node namespace, and the next run reuses it', async () => {
    const rec = await node.nodeNamespaceRecord();
    const netnsBefore = await readlink(`/proc/${rec.holderPid}/ns/net`);
    const macBefore = (await node.enter(['ip', '-o', 'link', 'show', 'tap0'])).stdout.match(/link\/ether (\S+)/)?.[1];
    assert.ok(macBefore);
    const runtimePid = Number(await readFile(join(node.runtimeDir, 'runtime.pid'), 'utf8'));

    agent.child.kill('SIGTERM');
    const exit = await agent.exited;
    assert.equal(exit.code, 0, agent.log);
    assert.ok(!isAlive(runtimePid), 'the runtime half outlived the agent');
    assert.ok(isAlive(rec.holderPid), 'the node namespace holder died with the agent');
    assert.ok(isAlive(rec.parentPid), 'rootlesskit died with the agent');
    await assert.rejects(stat(node.socket), 'the CRI socket is left behind after a clean stop');

    agent = node.start();
    await agent.ready();
    assert.match(agent.log, /reusing the node namespace/);
    const again = await node.nodeNamespaceRecord();
    assert.equal(again.holderPid, rec.holderPid);
    assert.equal(await readlink(`/proc/${again.holderPid}/ns/net`), netnsBefore);
    const macAfter = (await node.enter(['ip', '-o', 'link', 'show', 'tap0'])).stdout.match(/link\/ether (\S+)/)?.[1];
    assert.equal(macAfter, macBefore, 'tap0 is not the same interface');
    assert.equal((await node.crictl(['version'])).code, 0);
  });

  it('usernode stop leaves nothing running, and stopping again succeeds', async () => {
    const rec = await node.nodeNamespaceRecord();
    const r = await node.usernode(['stop']);
    assert.equal(r.code, 0, r.stderr);
    assert.match(r.stdout, /stopped/);
    const exit = await agent.exited;
    assert.equal(exit.code, 0);
    const procs = await processesOf(me.uid);
    const left = procs.filter((p) => p.userNs === rec.userNs || p.pid === rec.parentPid || p.pid === rec.holderPid);
    assert.deepEqual(left, [], 'processes left in the node namespace');
    const ours = procs.filter((p) => {
      try {
        const cmd = readFileSync(`/proc/${p.pid}/cmdline`, 'utf8');
        return cmd.includes(node.dir) || (p.comm === 'slirp4netns' && cmd.includes(String(rec.holderPid)));
      } catch {
        return false;
      }
    });
    assert.deepEqual(ours, [], 'agent, rootlesskit or slirp4netns processes left behind');
    for (const f of ['cri.sock', 'node-namespace.json', 'rootlesskit', 'agent.pid', 'runtime.pid']) {
      await assert.rejects(stat(join(node.runtimeDir, f)), `${f} left behind`);
    }
    const again = await node.usernode(['stop']);
    assert.equal(again.code, 0, again.stderr);
    assert.match(again.stdout, /not running/);
  });
});
