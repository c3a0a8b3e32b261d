import assert from 'node:assert/strict';
import { mkdir, readFile, realpath, symlink, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';

import { type CriClients, criCall, criClients } from '../../proto/client.js';
import { mountRootsAnnotation } from '../../pkg/safepath/mount_roots.js';
import { type AgentProcess, createContainer, eventually, sleep, startBusyboxPod, type TestNode } from '../lib/agent.js';

// The CVE-2017-1002101 class against the real agent: one container swaps a
// volume's subPath between a real folder and a symlink to the node's "/" in a
// tight loop, while the test, as the node half does, checks the subPath
// (it resolves inside the volume) and then asks CreateContainer for it with
// the volume's root in the mount-roots annotation. A mount that followed the
// swapped symlink would show the node's root to the new container; pinned by
// descriptor beneath the volume, each attempt either mounts the real folder or
// is refused naming the mount — never the node's root. Also: a subPath that is
// a symlink out of its volume is refused; a plain CRI host path that is a
// symlink is still followed (containerd resolves it); nothing is left mounted.

const attempts = 100;

describe('bind mount sources against a container swapping a symlink (the CVE-2017-1002101 class)', () => {
  let node: TestNode;
  let agent: AgentProcess;
  let busybox: string;
  let pod: string;
  let podFile: string;
  let cri: CriClients;
  let vol: string;
  let logs: string;
  let swapper: string;

  const call = <T>(method: string, req: object): Promise<T> => criCall<T>(cri, 'runtime', method, req);

  /** Creates, runs to its end and removes a container that lists /mnt; resolves with the listing, or the refusal. */
  const listMnt = async (name: string, mount: Record<string, unknown>, annotations: Record<string, string> = {}): Promise<{ listing: string } | { refused: Error & { code?: number } }> => {
    let id: string;
    try {
      ({ containerId: id } = await call<{ containerId: string }>('CreateContainer', {
        podSandboxId: pod,
        config: { metadata: { name }, image: { image: busybox }, command: ['sh', '-c', 'ls -A /mnt 2>&1 | tr "\\n" " "; echo'], logPath: `${name}.log`, linux: {}, mounts: [mount], annotations },
        sandboxConfig: { metadata: { name: 'race', namespace: 'default', uid: 'race-uid' } },
      }));
    } catch (e: unknown) {
      return { refused: e as Error & { code?: number } };
    }
    try {
      await call('StartContainer', { containerId: id });
      await eventually(`${name} to exit`, async () => ((await call<{ status: { state: string } }>('ContainerStatus', { containerId: id })).status.state === 'CONTAINER_EXITED' ? true : undefined), 30000);
      // The CRI log: partial records (P) until the full one (F); the exit can be seen a moment before the last is written.
      const out = await eventually(`${name}'s output`, async () => {
        const records = [...(await readFile(join(logs, `${name}.log`), 'utf8')).matchAll(/^\S+ stdout ([PF]) (.*)$/gm)];
        return records.some((r) => r[1] === 'F') ? records.map((r) => r[2]).join('') : undefined;
      }, 10000);
      return { listing: out.trim() };
    } finally {
      await call('RemoveContainer', { containerId: id });
    }
  };

  before(async () => {
    ({ node, agent, busybox, pod, podFile } = await startBusyboxPod((dir) => ({ metadata: { name: 'race', namespace: 'default', uid: 'race-uid', attempt: 0 }, log_directory: join(dir, 'logs'), linux: {} })));
    cri = criClients(node.socket);
    logs = join(node.dir, 'logs');
    await mkdir(join(node.dir, 'volume'));
    vol = await realpath(join(node.dir, 'volume'));
    await mkdir(join(vol, 'real'));
    await writeFile(join(vol, 'real', 'in-the-volume'), '');
    await symlink('/', join(vol, 'to-root'));
    // The swapper: sub is the real folder, then nothing, then a symlink to the node's /, then nothing, round and round.
    swapper = await createContainer(node, pod, podFile, {
      metadata: { name: 'swapper' },
      image: { image: busybox },
      command: ['sh', '-c', 'cd /vol; while true; do mv real sub; mv sub real; mv to-root sub; mv sub to-root; done'],
      log_path: 'swapper.log',
      linux: {},
      mounts: [{ container_path: '/vol', host_path: vol }],
    });
    assert.equal((await node.crictl(['start', swapper])).code, 0);
  });

  after(async () => {
    cri?.close();
    agent?.child.kill('SIGTERM');
    await agent?.exited;
    await node?.destroy();
  });

  it(`a subPath swapped for a symlink to / after the node's check never mounts outside its volume (${attempts} attempts)`, async (t) => {
    const outcomes = { inVolume: 0, refused: 0, notChecked: 0 };
    const escaped: string[] = [];
    const refusals = new Set<string>();
    for (let i = 0; i < attempts; ) {
      // The node half's check (pod_volumes.ts): the subPath resolves inside the volume right now.
      const real = await realpath(join(vol, 'sub')).catch(() => undefined);
      if (!real || !real.startsWith(`${vol}/`)) {
        outcomes.notChecked++;
        await sleep(1);
        continue;
      }
      i++;
      const r = await listMnt(`victim-${i}`, { containerPath: '/mnt', hostPath: join(vol, 'sub') }, { [mountRootsAnnotation]: JSON.stringify({ '/mnt': { root: vol } }) });
      if ('refused' in r) {
        outcomes.refused++;
        assert.match(r.refused.message, /config\.mounts\[0\]\.host_path|mount of .*\/sub at \/mnt/, `a refusal must name the mount: ${r.refused.message}`);
        refusals.add(r.refused.message.replace(/victim-\d+/g, 'victim-N'));
      } else if (r.listing === 'in-the-volume') outcomes.inVolume++;
      else escaped.push(r.listing);
    }
    t.diagnostic(`${attempts} checked attempts: ${outcomes.inVolume} mounted the volume's folder, ${outcomes.refused} refused, ${escaped.length} saw something else; ${outcomes.notChecked} checks found the symlink and were not sent`);
    for (const m of refusals) t.diagnostic(`refused: ${m}`);
    assert.deepEqual(escaped, [], 'a container saw something other than the volume folder (the node root?)');
    assert.ok(outcomes.inVolume > 0, 'no attempt mounted the real folder: the race was not exercised');
    assert.ok(outcomes.refused > 0, 'no attempt met the swapped symlink: the race was not exercised');
  });

  it('a subPath that is a symlink out of its volume is refused with an error naming the mount', async () => {
    const r = await listMnt('escape', { containerPath: '/mnt', hostPath: join(vol, 'stays-a-link') }, { [mountRootsAnnotation]: JSON.stringify({ '/mnt': { root: vol } }) });
    assert.ok('refused' in r, `a missing subPath was mounted: ${JSON.stringify(r)}`);
    assert.match(r.refused.message, /stays-a-link does not exist/, 'the runtime makes no folder inside a volume (the node half does)');
    await symlink('/', join(vol, 'stays-a-link'));
    const r2 = await listMnt('escape2', { containerPath: '/mnt', hostPath: join(vol, 'stays-a-link') }, { [mountRootsAnnotation]: JSON.stringify({ '/mnt': { root: vol } }) });
    assert.ok('refused' in r2, `the symlink out of the volume was mounted: ${JSON.stringify(r2)}`);
    assert.match(r2.refused.message, /mount of .*stays-a-link at \/mnt: .*stays-a-link is a symlink to \/, outside/);
    assert.equal(r2.refused.code, 7, 'PERMISSION_DENIED');
  });

  it('a plain CRI host path that is a symlink is followed, as containerd resolves it', async () => {
    const link = join(node.dir, 'link-to-folder');
    await mkdir(join(node.dir, 'folder'));
    await writeFile(join(node.dir, 'folder', 'through-the-link'), '');
    await symlink(join(node.dir, 'folder'), link);
    const r = await listMnt('plain', { containerPath: '/mnt', hostPath: link });
    assert.deepEqual(r, { listing: 'through-the-link' });
  });

  it('no pinned source stays mounted once runc has made the container, nor after removal', async () => {
    const staged = async (): Promise<string> => (await node.enter(['sh', '-c', 'ls -A /run/usernode/mounts; grep -c " /run/usernode/mounts/" /proc/self/mountinfo || true'])).stdout.trim();
    assert.equal(await staged(), '0', 'pinned sources are released once runc has made the container (the swapper runs on)');
    assert.equal((await node.crictl(['rm', '-f', swapper])).code, 0);
    assert.equal(await staged(), '0');
  });
});
