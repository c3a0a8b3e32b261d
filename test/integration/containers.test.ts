import assert from 'node:assert/strict';
import { readFileSync, readlinkSync, statSync } from 'node:fs';
import { writeFile } from 'node:fs/promises';
import { createServer, type AddressInfo } from 'node:net';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';

import { criClients } from '../../proto/client.js';
import { type AgentProcess, createContainer, eventually, freePort, processesOf, requiredEnv, startBusyboxPod, type TestNode } from '../lib/agent.js';

// Containers end to end: the real agent as this user, real runc under real
// conmon, in a real pod on the bridge, from an image pulled from the test
// registry; crictl drives it as a user would.

interface Inspect {
  status: { state: string; exitCode: number; reason: string; logPath: string; startedAt: string; finishedAt: string };
}

describe('usernode containers: create, start, logs, stop, remove, restarts', () => {
  let node: TestNode;
  let agent: AgentProcess;
  let pod: string;
  let podFile: string;
  let busybox: string;

  const create = (name: string, command: string[], extra: Record<string, unknown> = {}): Promise<string> =>
    createContainer(node, pod, podFile, { metadata: { name }, image: { image: busybox }, command, log_path: `${name}/0.log`, linux: {}, ...extra });
  const inspect = async (id: string): Promise<Inspect> => {
    const r = await node.crictl(['inspect', id]);
    assert.equal(r.code, 0, r.stderr);
    return JSON.parse(r.stdout) as Inspect;
  };

  before(async () => {
    ({ node, agent, busybox, pod, podFile } = await startBusyboxPod((dir) => ({ metadata: { name: 'box', namespace: 'default', uid: 'box-uid', attempt: 0 }, hostname: 'boxhost', log_directory: join(dir, 'logs'), linux: {} })));
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
    const slow = await node.crictl(['exec', '--sync', '--timeout', '1', id, 'sleep', '31']);
    assert.notEqual(slow.code, 0);
    assert.match(slow.stderr, /DeadlineExceeded|timed out/);
    // The timed-out command is gone, not left running in the container.
    const left = await node.crictl(['exec', '--sync', id, 'sh', '-c', 'ps -o args | grep "^sleep 31" || true']);
    assert.equal(left.code, 0, left.stderr);
    assert.equal(left.stdout.trim(), '', 'the timed-out command still runs');
  });

  it('confines RuntimeDefault containers with seccomp: namespace calls refused unless CAP_SYS_ADMIN is added; nil profile runs unconfined', async () => {
    const probe = ['sh', '-c', 'grep "^Seccomp:" /proc/self/status; unshare -U true && echo unshare=ok || echo unshare=refused'];
    const run = async (name: string, securityContext: Record<string, unknown>): Promise<string> => {
      const id = await create(name, probe, { linux: { security_context: securityContext } });
      assert.equal((await node.crictl(['start', id])).code, 0);
      await eventually(`${name} to exit`, async () => ((await inspect(id)).status.state === 'CONTAINER_EXITED' ? true : undefined));
      return (await node.crictl(['logs', id])).stdout + (await node.crictl(['logs', id])).stderr;
    };
    const confined = await run('seccomp-default', { seccomp: { profile_type: 0 } });
    assert.match(confined, /^Seccomp:\s+2$/m, confined);
    assert.match(confined, /unshare=refused/, confined);
    assert.match(confined, /Operation not permitted/, confined);
    const admin = await run('seccomp-default-admin', { seccomp: { profile_type: 0 }, capabilities: { add_capabilities: ['SYS_ADMIN'] } });
    assert.match(admin, /^Seccomp:\s+2$/m, admin);
    assert.match(admin, /unshare=ok/, admin);
    const unconfined = await run('seccomp-nil', {});
    assert.match(unconfined, /^Seccomp:\s+0$/m, unconfined);
    assert.match(unconfined, /unshare=ok/, unconfined);
  });

  it('masks and write-protects the paths the security context names', async () => {
    const id = await create('masked', ['sleep', '300'], { linux: { security_context: { masked_paths: ['/etc/group', '/var/spool'], readonly_paths: ['/tmp'] } } });
    assert.equal((await node.crictl(['start', id])).code, 0);
    const r = await node.crictl(['exec', '--sync', id, 'sh', '-c', 'echo "group=[$(cat /etc/group)] spool=[$(ls /var/spool)] passwd=$(grep -c root /etc/passwd)"; touch /tmp/x 2>&1 || true']);
    assert.match(r.stdout, /^group=\[\] spool=\[\] passwd=1$/m, r.stdout);
    assert.match(r.stdout + r.stderr, /Read-only file system/, r.stdout + r.stderr);
  });

  it("shares the node's IPC namespace with a hostIPC pod, and only with it", async () => {
    const mk = await node.enter(['ipcmk', '-M', '4096']);
    assert.equal(mk.code, 0, mk.stderr);
    const shmid = /id: (\d+)/.exec(mk.stdout)?.[1];
    assert.ok(shmid, mk.stdout);
    try {
      const segmentsSeen = async (name: string, ipc: number): Promise<string[]> => {
        const pf = join(node.dir, `pod-${name}.json`);
        await writeFile(pf, JSON.stringify({ metadata: { name, namespace: 'default', uid: `${name}-uid`, attempt: 0 }, linux: { security_context: { namespace_options: { ipc } } } }));
        const p = await node.crictl(['runp', pf]);
        assert.equal(p.code, 0, p.stderr);
        const cf = join(node.dir, `ctr-${name}.json`);
        await writeFile(cf, JSON.stringify({ metadata: { name }, image: { image: busybox }, command: ['sleep', '300'], linux: {} }));
        const c = await node.crictl(['create', p.stdout.trim(), cf, pf]);
        assert.equal(c.code, 0, c.stderr);
        assert.equal((await node.crictl(['start', c.stdout.trim()])).code, 0);
        const shm = await node.crictl(['exec', '--sync', c.stdout.trim(), 'cat', '/proc/sysvipc/shm']);
        assert.equal(shm.code, 0, shm.stderr);
        assert.equal((await node.crictl(['rmp', '-f', p.stdout.trim()])).code, 0);
        return shm.stdout.split('\n').slice(1).map((l) => l.trim().split(/\s+/)[1] ?? '').filter((x) => x !== '');
      };
      assert.ok((await segmentsSeen('host-ipc', 2)).includes(shmid), "a hostIPC pod does not see the node's shared memory");
      assert.ok(!(await segmentsSeen('pod-ipc', 0)).includes(shmid), "a pod with its own IPC namespace sees the node's shared memory");
    } finally {
      await node.enter(['ipcrm', '-m', shmid]);
    }
  });

  it('runs a pod in a user namespace of its own (hostUsers: false): the nested map, root owning its files, and bad maps refused by field', async () => {
    const mapping = { container_id: 0, host_id: 1000, length: 10000 };
    const pf = join(node.dir, 'pod-userns.json');
    const podConfig = (userns: Record<string, unknown>) => ({ metadata: { name: 'userns', namespace: 'default', uid: 'userns-uid', attempt: 0 }, linux: { security_context: { namespace_options: { userns_options: userns } } } });
    await writeFile(pf, JSON.stringify(podConfig({ mode: 0, uids: [mapping], gids: [mapping] })));
    const p = await node.crictl(['runp', pf]);
    assert.equal(p.code, 0, p.stderr);
    const podId = p.stdout.trim();
    try {
      const cf = join(node.dir, 'ctr-userns.json');
      await writeFile(cf, JSON.stringify({ metadata: { name: 'in-userns' }, image: { image: busybox }, command: ['sleep', '300'], linux: {} }));
      const c = await node.crictl(['create', podId, cf, pf]);
      assert.equal(c.code, 0, c.stderr);
      assert.equal((await node.crictl(['start', c.stdout.trim()])).code, 0);
      const r = await node.crictl(['exec', '--sync', c.stdout.trim(), 'sh', '-c', 'cat /proc/self/uid_map; id -u; stat -c "%u %g" /bin/busybox; touch /etc/written && echo written; hostname']);
      assert.equal(r.code, 0, r.stderr);
      assert.match(r.stdout, /^\s*0\s+1000\s+10000$/m, 'the container does not see the nested map');
      assert.match(r.stdout, /^0$/m, 'the container does not run as its root');
      assert.match(r.stdout, /^0 0$/m, "the image's files are not its root's");
      assert.match(r.stdout, /^written$/m);
      // Seen from the node, the container's root is node uid 1000.
      const info = JSON.parse((await node.crictl(['inspect', c.stdout.trim()])).stdout) as { info: { pid: number } };
      const st = await node.enter(['grep', '^Uid:', `/proc/${info.info.pid}/status`]);
      assert.match(st.stdout, /^Uid:\s+1000\s/, st.stdout);
      const status = JSON.parse((await node.crictl(['inspectp', podId])).stdout) as { status: { linux: { namespaces: { options: { usernsOptions: { mode: string } } } } } };
      assert.equal(status.status.linux.namespaces.options.usernsOptions.mode, 'POD');
    } finally {
      assert.equal((await node.crictl(['rmp', '-f', podId])).code, 0);
    }
    // Maps the node cannot give, or the CRI does not allow, are refused naming the field; nothing is left.
    for (const [userns, field] of [
      [{ mode: 0, uids: [{ ...mapping, length: 100000 }], gids: [mapping] }, 'uids[0].host_id'],
      [{ mode: 0, uids: [mapping, { ...mapping, host_id: 20000 }], gids: [mapping] }, 'uids'],
      [{ mode: 0, uids: [{ ...mapping, container_id: 1 }], gids: [mapping] }, 'uids[0].container_id'],
      [{ mode: 1 }, 'mode'],
    ] as const) {
      await writeFile(pf, JSON.stringify(podConfig(userns)));
      const bad = await node.crictl(['runp', pf]);
      assert.notEqual(bad.code, 0);
      assert.match(bad.stderr, /InvalidArgument/, bad.stderr);
      assert.ok(bad.stderr.includes(`userns_options.${field}`), `${bad.stderr} does not name ${field}`);
    }
    assert.ok(!(await node.crictl(['pods', '-q'])).stdout.includes(podId));
  });

  it("resolves names through the DNS server its pod's DNS config names (one in the test host, reached through slirp4netns)", async () => {
    // Required, like the test registry: scripts/testhost.sh up (run by npm test as root) prints it.
    const dns = requiredEnv('USERNODE_TESTHOST_DNS');
    // "192.168.213.2:53,usernode-test.example=192.168.213.99"
    const [server, record] = dns.split(',') as [string, string];
    const [name, address] = record.split('=') as [string, string];
    const pf = join(node.dir, 'pod-dns.json');
    await writeFile(pf, JSON.stringify({ metadata: { name: 'dns', namespace: 'default', uid: 'dns-uid', attempt: 0 }, dns_config: { servers: [server.split(':')[0]], searches: ['example'], options: ['ndots:1'] }, linux: {} }));
    const p = await node.crictl(['runp', pf]);
    assert.equal(p.code, 0, p.stderr);
    try {
      const cf = join(node.dir, 'ctr-dns.json');
      await writeFile(cf, JSON.stringify({ metadata: { name: 'resolver' }, image: { image: busybox }, command: ['sleep', '300'], linux: {} }));
      const c = await node.crictl(['create', p.stdout.trim(), cf, pf]);
      assert.equal(c.code, 0, c.stderr);
      assert.equal((await node.crictl(['start', c.stdout.trim()])).code, 0);
      const found = await node.crictl(['exec', '--sync', c.stdout.trim(), 'nslookup', name]);
      assert.equal(found.code, 0, found.stdout + found.stderr);
      assert.match(found.stdout, new RegExp(`Address:\\s+${address.replace(/\./g, '\\.')}`), found.stdout);
      // Short name through the search list; an unknown name is NXDOMAIN from that server, not an answer from elsewhere.
      const short = await node.crictl(['exec', '--sync', c.stdout.trim(), 'nslookup', name.split('.')[0]!]);
      assert.match(short.stdout, new RegExp(address.replace(/\./g, '\\.')), short.stdout);
      const missing = await node.crictl(['exec', '--sync', c.stdout.trim(), 'sh', '-c', 'nslookup no-such-name.example 2>&1; echo "exit=$?"']);
      assert.match(missing.stdout, /NXDOMAIN/, missing.stdout);
      assert.match(missing.stdout, /^exit=1$/m, missing.stdout);
    } finally {
      assert.equal((await node.crictl(['rmp', '-f', p.stdout.trim()])).code, 0);
    }
  });

  it('shares one process namespace among the containers of a shareProcessNamespace pod, with an init as PID 1 that goes with the pod', async () => {
    const pf = join(node.dir, 'pod-pidns.json');
    await writeFile(pf, JSON.stringify({ metadata: { name: 'pidns', namespace: 'default', uid: 'pidns-uid', attempt: 0 }, linux: { security_context: { namespace_options: { pid: 0 } } } }));
    const p = await node.crictl(['runp', pf]);
    assert.equal(p.code, 0, p.stderr);
    const podId = p.stdout.trim();
    const ids: string[] = [];
    for (const n of [301, 302]) {
      const cf = join(node.dir, `ctr-pidns-${n}.json`);
      await writeFile(cf, JSON.stringify({ metadata: { name: `sleeper-${n}` }, image: { image: busybox }, command: ['sleep', String(n)], linux: { security_context: { namespace_options: { pid: 0 } } } }));
      const c = await node.crictl(['create', podId, cf, pf]);
      assert.equal(c.code, 0, c.stderr);
      assert.equal((await node.crictl(['start', c.stdout.trim()])).code, 0);
      ids.push(c.stdout.trim());
    }
    const r = await node.crictl(['exec', '--sync', ids[1]!, 'sh', '-c', 'echo "pid1=$(cat /proc/1/comm)"; ps -o args']);
    assert.match(r.stdout, /^pid1=catatonit$/m, r.stdout);
    assert.match(r.stdout, /^sleep 301$/m, 'the other container is not in the shared process namespace');
    assert.match(r.stdout, /^sleep 302$/m);
    // The init is the process of the node in that namespace named catatonit; after the pod it is gone.
    const info = JSON.parse((await node.crictl(['inspect', ids[0]!])).stdout) as { info: { pid: number } };
    const podPidNs = readlinkSync(`/proc/${info.info.pid}/ns/pid`);
    const inPod = async (): Promise<string[]> =>
      (await processesOf())
        .filter((x) => {
          try {
            return readlinkSync(`/proc/${x.pid}/ns/pid`) === podPidNs;
          } catch {
            return false;
          }
        })
        .map((x) => x.comm);
    assert.ok((await inPod()).includes('catatonit'), 'no init in the pod process namespace');
    assert.equal((await node.crictl(['rmp', '-f', podId])).code, 0);
    assert.deepEqual(await inPod(), [], 'processes of the pod are left running');
  });

  it('makes a missing mount source a folder (as containerd), and refuses one it cannot use, naming the field', async () => {
    const made = join(node.dir, 'made-by-usernode', 'deep');
    const id = await create('mount-made', ['sleep', '300'], { mounts: [{ container_path: '/data', host_path: made }] });
    assert.ok(statSync(made).isDirectory());
    assert.equal((await node.crictl(['start', id])).code, 0);
    // Under a file: neither usable nor creatable.
    const aFile = join(node.dir, 'a-file');
    await writeFile(aFile, 'x');
    const f = join(node.dir, `ctr-bad-mount.json`);
    await writeFile(f, JSON.stringify({ metadata: { name: 'bad-mount' }, image: { image: busybox }, command: ['true'], linux: {}, mounts: [{ container_path: '/x', host_path: join(aFile, 'inside') }] }));
    const r = await node.crictl(['create', pod, f, podFile]);
    assert.notEqual(r.code, 0);
    assert.match(r.stderr, /InvalidArgument/);
    assert.match(r.stderr, /mounts\[0\]\.host_path/);
  });

  it('mounts an image as a read-only volume (its programs run from it), and unmounts it with the container', async () => {
    const id = await create('image-volume', ['sleep', '300'], { mounts: [{ container_path: '/iv', readonly: true, image: { image: busybox } }] });
    assert.equal((await node.crictl(['start', id])).code, 0);
    const ran = await node.crictl(['exec', '--sync', id, '/iv/bin/busybox', 'echo', 'from the volume']);
    assert.equal(ran.stdout.trim(), 'from the volume');
    const write = await node.crictl(['exec', '--sync', id, 'sh', '-c', 'touch /iv/x 2>&1 || true']);
    assert.match(write.stdout, /Read-only file system/);
    const st = JSON.parse((await node.crictl(['inspect', id])).stdout) as { status: { mounts: Array<{ containerPath: string; image?: { image: string; imageRef: string } }> } };
    const m = st.status.mounts.find((x) => x.containerPath === '/iv');
    assert.equal(m?.image?.image, busybox);
    assert.match(m?.image?.imageRef ?? '', /^sha256:[0-9a-f]{64}$/);
    assert.equal((await node.crictl(['rm', '-f', id])).code, 0);
    const mounts = await node.enter(['cat', '/proc/self/mountinfo']);
    assert.ok(!mounts.stdout.includes(id), 'a mount of the removed container is left');
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
    // Only this node's: conmon's command line names the bundle and exit folders under the node's folder.
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
