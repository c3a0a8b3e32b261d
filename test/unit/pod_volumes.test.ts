import assert from 'node:assert/strict';
import { lstat, mkdir, readdir, readFile, readlink, stat, symlink, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { describe, test } from 'node:test';

import { writeAtomically } from '../../pkg/node/atomic_writer.js';
import { parseManifest, type PodManifest } from '../../pkg/node/pod_manifest.js';
import { type ClusterObjects, criMountsOf, setUpPodVolumes, tearDownPodVolumes } from '../../pkg/node/pod_volumes.js';
import { mountRootsAnnotation } from '../../pkg/safepath/mount_roots.js';
import { rejection, tempFolders } from '../lib/unit.js';

// Pod volumes on the node: the atomic writer's folder layout and updates, each
// volume type's files, token refresh, the hostPath ownership rule, teardown.

const temp = tempFolders('pod-volumes-');
const uid = process.getuid!();
const file = (data: string, mode = 0o644) => ({ data: Buffer.from(data), mode });

describe('the atomic writer', () => {
  test('files through ..data; an update swaps the content at once and removes the old timestamped folder', async () => {
    const dir = await temp.fresh('aw');
    let t = Date.UTC(2026, 11, 1, 16, 2, 41);
    assert.equal(await writeAtomically(dir, new Map([['a', file('one')], ['sub/b', file('two', 0o400)]]), () => t), true);
    const first = await readlink(join(dir, '..data'));
    assert.match(first, /^\.\.2026_12_01_16_02_41\./);
    assert.equal(await readlink(join(dir, 'a')), '..data/a');
    assert.equal(await readlink(join(dir, 'sub')), '..data/sub');
    assert.equal(await readFile(join(dir, 'sub', 'b'), 'utf8'), 'two');
    assert.equal((await stat(join(dir, 'sub', 'b'))).mode & 0o777, 0o400);
    assert.equal((await stat(join(dir, 'a'))).mode & 0o777, 0o644);

    assert.equal(await writeAtomically(dir, new Map([['a', file('one')], ['sub/b', file('two', 0o400)]]), () => t), false, 'the same content is not written again');
    assert.equal(await readlink(join(dir, '..data')), first);

    t += 61000;
    assert.equal(await writeAtomically(dir, new Map([['a', file('uno', 0o600)], ['c', file('three')]]), () => t), true);
    const second = await readlink(join(dir, '..data'));
    assert.notEqual(second, first);
    assert.equal(await readFile(join(dir, 'a'), 'utf8'), 'uno');
    assert.equal((await stat(join(dir, 'a'))).mode & 0o777, 0o600);
    assert.deepEqual((await readdir(dir)).sort(), [second, '..data', 'a', 'c'].sort(), 'the old folder and the name no longer in the payload are gone');
  });

  test('refuses names that would leave the folder or shadow ..data', async () => {
    const dir = await temp.fresh('aw-bad');
    for (const bad of ['../x', '/abs', '..data', 'a//b']) await assert.rejects(writeAtomically(dir, new Map([[bad, file('x')]])), /is not a file name/);
  });
});

const pod = (spec: string): PodManifest =>
  parseManifest(`apiVersion: v1\nkind: Pod\nmetadata: { name: web, namespace: shop, uid: pod-1, labels: { app: web, tier: "front end" } }\nspec:\n  serviceAccountName: default\n${spec}`, '/m/p.yaml')[0]!;

function fakeCluster(): ClusterObjects & { configMaps: Record<string, Record<string, string>>; tokens: number } {
  const c = {
    configMaps: { app: { 'app.conf': 'level=info\n', other: 'x' } } as Record<string, Record<string, string>>,
    tokens: 0,
    configMap: async (_ns: string, name: string) => (c.configMaps[name] ? { data: c.configMaps[name]!, binaryData: { 'logo.bin': Buffer.from([0, 1, 2]) } } : undefined),
    secret: async (_ns: string, name: string) => (name === 'db' ? { data: { password: Buffer.from('s3cret') } } : undefined),
    serviceAccountToken: async (_ns: string, sa: string, r: { expirationSeconds: number; podUid: string }) => {
      c.tokens++;
      return { token: `token-${c.tokens}-${sa}-${r.podUid}`, expiresAt: new Date(now + r.expirationSeconds * 1000) };
    },
  };
  return c;
}
let now = Date.UTC(2026, 11, 1, 16, 0, 0);

describe('pod volumes', () => {
  test('each type at its place: emptyDir on disk, Memory and secrets and tokens on the memory root; API data read-only', async () => {
    const root = await temp.fresh('disk');
    const memoryRoot = await temp.fresh('mem');
    const cluster = fakeCluster();
    const p = pod(`  volumes:
    - { name: scratch, emptyDir: {} }
    - { name: mem, emptyDir: { medium: Memory, sizeLimit: 1Gi } }
    - { name: conf, configMap: { name: app, items: [{ key: app.conf, path: etc/app.conf }] } }
    - { name: creds, secret: { secretName: db, defaultMode: 0400 } }
    - { name: info, downwardAPI: { items: [{ path: labels, fieldRef: { fieldPath: metadata.labels } }] } }
    - name: kube-api-access
      projected:
        defaultMode: 0644
        sources:
          - serviceAccountToken: { path: token, expirationSeconds: 3600 }
          - configMap: { name: app, items: [{ key: other, path: ca.crt }] }
          - downwardAPI: { items: [{ path: namespace, fieldRef: { fieldPath: metadata.namespace } }] }
  containers:
    - name: c
      image: b
      volumeMounts:
        - { name: scratch, mountPath: /scratch }
        - { name: mem, mountPath: /mem }
        - { name: conf, mountPath: /conf }
        - { name: creds, mountPath: /creds }
        - { name: info, mountPath: /info }
        - { name: kube-api-access, mountPath: /var/run/secrets/kubernetes.io/serviceaccount, readOnly: true }
        - { name: scratch, mountPath: /work, subPathExpr: "$(POD_NAME)" }
`);
    const d = { root, memoryRoot, uid, cluster, now: () => now };
    const v = await setUpPodVolumes(p, d);
    const mounts = await v.mounts(p.containers[0]!, [{ key: 'POD_NAME', value: 'web' }]);
    const at = (path: string) => mounts.find((m) => m.containerPath === path)!;
    assert.equal(at('/scratch').hostPath, join(root, 'pod-1', 'volumes', 'scratch'));
    assert.equal(at('/scratch').readonly, false);
    assert.equal((await stat(at('/scratch').hostPath)).mode & 0o777, 0o777, 'an emptyDir any container user may write, as kubelet makes it');
    assert.equal(at('/mem').hostPath, join(memoryRoot, 'pod-1', 'volumes', 'mem'));
    assert.match(v.notes[0]!, /sizeLimit 1Gi is not enforced/);
    assert.equal(await readFile(join(at('/conf').hostPath, 'etc', 'app.conf'), 'utf8'), 'level=info\n');
    assert.equal(at('/conf').readonly, true);
    assert.equal(at('/creds').hostPath, join(memoryRoot, 'pod-1', 'volumes', 'creds'));
    assert.equal((await stat(join(at('/creds').hostPath, 'password'))).mode & 0o777, 0o400);
    assert.equal(await readFile(join(at('/info').hostPath, 'labels'), 'utf8'), 'app="web"\ntier="front end"');
    const sa = at('/var/run/secrets/kubernetes.io/serviceaccount').hostPath;
    assert.ok(sa.startsWith(memoryRoot));
    assert.equal(await readFile(join(sa, 'token'), 'utf8'), 'token-1-default-pod-1');
    assert.equal(await readFile(join(sa, 'ca.crt'), 'utf8'), 'x');
    assert.equal(await readFile(join(sa, 'namespace'), 'utf8'), 'shop');
    assert.equal(at('/work').hostPath, join(root, 'pod-1', 'volumes', 'scratch', 'web'), 'subPathExpr expanded and made');
    assert.equal(at('/work').propagation, 'PROPAGATION_PRIVATE');
    // Each mount names its volume folder and that folder's identity, for the runtime to open the path beneath it.
    const scratch = await stat(join(root, 'pod-1', 'volumes', 'scratch'), { bigint: true });
    assert.deepEqual(at('/work').volume, { root: join(root, 'pod-1', 'volumes', 'scratch'), identity: `${scratch.dev}:${scratch.ino}` });
    const cri = criMountsOf(mounts);
    assert.ok(cri.mounts.every((m) => !('volume' in m)), 'the CRI mounts carry no field the CRI lacks');
    assert.deepEqual(JSON.parse(cri.annotations[mountRootsAnnotation]!)['/work'], at('/work').volume);

    // A sync soon after: nothing asked again, nothing rewritten.
    const before = await readlink(join(sa, '..data'));
    now += 60000;
    await setUpPodVolumes(p, d);
    assert.equal(cluster.tokens, 1);
    assert.equal(await readlink(join(sa, '..data')), before);
    // A changed configMap shows; at 80% of its life the token is asked for again.
    cluster.configMaps.app = { 'app.conf': 'level=debug\n', other: 'y' };
    now += 0.8 * 3600 * 1000;
    await setUpPodVolumes(p, d);
    assert.equal(await readFile(join(at('/conf').hostPath, 'etc', 'app.conf'), 'utf8'), 'level=debug\n');
    assert.equal(await readFile(join(sa, 'token'), 'utf8'), 'token-2-default-pod-1');
    assert.equal(await readFile(join(sa, 'ca.crt'), 'utf8'), 'y');

    await tearDownPodVolumes('pod-1', d);
    await tearDownPodVolumes('pod-1', d);
    assert.deepEqual(await readdir(root), []);
    assert.deepEqual(await readdir(memoryRoot), []);
  });

  test('a missing configMap, secret or key is an error naming it; optional ones give empty files', async () => {
    const d = { root: await temp.fresh('disk'), memoryRoot: await temp.fresh('mem'), uid, cluster: fakeCluster() };
    const spec = (v: string) => pod(`  volumes:\n    - ${v}\n  containers:\n    - { name: c, image: b }\n`);
    const e = (await rejection(setUpPodVolumes(spec('{ name: x, configMap: { name: nope } }'), d))) as Error & { field: string };
    assert.match(e.message, /spec\.volumes\[0\] \(volume x\): configmap "nope" not found/);
    assert.match(((await rejection(setUpPodVolumes(spec('{ name: x, secret: { secretName: db, items: [{ key: user, path: u }] } }'), d))) as Error).message, /secret "db" has no key "user"/);
    await setUpPodVolumes(spec('{ name: x, secret: { secretName: nope, optional: true } }'), d);
    assert.match(((await rejection(setUpPodVolumes(spec('{ name: x, configMap: { name: app } }'), { ...d, cluster: undefined }))) as Error).message, /no control plane/);
  });

  test("hostPath: the user's own paths only, type checks, OrCreate makes them", async () => {
    const home = await temp.fresh('home');
    const d = { root: await temp.fresh('disk'), memoryRoot: await temp.fresh('mem'), uid };
    const spec = (path: string, type = '') => pod(`  volumes:\n    - { name: h, hostPath: { path: "${path}", type: "${type}" } }\n  containers:\n    - { name: c, image: b, volumeMounts: [{ name: h, mountPath: /h }] }\n`);
    const v = await setUpPodVolumes(spec(join(home, 'new', 'dir'), 'DirectoryOrCreate'), d);
    assert.equal((await v.mounts(spec('/x').containers[0]!))[0]!.hostPath, join(home, 'new', 'dir'));
    assert.ok((await stat(join(home, 'new', 'dir'))).isDirectory());
    await setUpPodVolumes(spec(join(home, 'file.txt'), 'FileOrCreate'), d);
    assert.ok((await stat(join(home, 'file.txt'))).isFile());
    assert.match(((await rejection(setUpPodVolumes(spec(join(home, 'file.txt'), 'Directory'), d))) as Error).message, /is not a directory/);
    assert.match(((await rejection(setUpPodVolumes(spec(join(home, 'missing'), 'File'), d))) as Error).message, /does not exist/);
    assert.match(((await rejection(setUpPodVolumes(spec(join(home, 'no', 'parent'), 'FileOrCreate'), d))) as Error).message, /does not exist/);
    if (uid !== 0) {
      const e = (await rejection(setUpPodVolumes(spec('/etc'), d))) as Error & { field: string };
      assert.match(e.message, /spec\.volumes\[0\] \(volume h\): \/etc is owned by uid 0: a usernode pod may mount only paths its user \(uid \d+\) owns/);
      assert.equal(e.field, 'spec.volumes[0] (volume h)');
    }
  });

  test('a subPath may not follow a symlink a container planted out of the volume', async () => {
    const d = { root: await temp.fresh('disk'), memoryRoot: await temp.fresh('mem'), uid };
    const p = pod('  volumes: [{ name: e, emptyDir: {} }]\n  containers:\n    - { name: c, image: b, volumeMounts: [{ name: e, mountPath: /e, subPath: link/x }] }\n');
    const v = await setUpPodVolumes(p, d);
    const outside = await temp.fresh('outside');
    await symlink(outside, join(d.root, 'pod-1', 'volumes', 'e', 'link'));
    assert.match(((await rejection(v.mounts(p.containers[0]!))) as Error).message, /leads out of the volume/);
    await mkdir(join(d.root, 'pod-1', 'volumes', 'e', 'real'));
    await writeFile(join(d.root, 'pod-1', 'volumes', 'e', 'real', 'f'), '');
    assert.ok((await lstat(join(d.root, 'pod-1', 'volumes', 'e', 'real'))).isDirectory());
  });
});
