import assert from 'node:assert/strict';
import { appendFile, readdir, readFile, rename, stat, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { describe, test } from 'node:test';
import { gunzipSync } from 'node:zlib';

import { ContainerLogManager, type ContainerLogRuntime, planRotation, removeContainerLogs, rotationSuffix } from '../../pkg/node/container_log_manager.js';
import { kubeletConfiguration } from '../../pkg/node/kubelet_config.js';
import { createLogger } from '../../pkg/log/logger.js';
import { tempFolders } from '../lib/unit.js';

// kubelet's container log rotation: the decisions on plain names, then
// rounds over real files with a fake runtime whose ReopenContainerLog does
// what conmon does (a new file at the path).

const folders = tempFolders('container-log-manager-');
const quiet = createLogger({ level: 'error', component: 'test', write: () => undefined });

describe('which rotated files go, and which are compressed', () => {
  test('at most maxFiles - 2 rotated files stay, the oldest go first; only the newest stays uncompressed until the next round', () => {
    const names = ['0.log', '0.log.20261201-100000.gz', '0.log.20261201-100010.gz', '0.log.20261201-100020.gz', '0.log.20261201-100030', 'other.log.20261201-100000', '1.log'];
    assert.deepEqual(planRotation('0.log', names, 5), { remove: ['0.log.20261201-100000.gz'], compress: ['0.log.20261201-100030'] });
    assert.deepEqual(planRotation('0.log', names, 3), { remove: ['0.log.20261201-100000.gz', '0.log.20261201-100010.gz', '0.log.20261201-100020.gz'], compress: ['0.log.20261201-100030'] });
    assert.deepEqual(planRotation('0.log', names, 2), { remove: ['0.log.20261201-100000.gz', '0.log.20261201-100010.gz', '0.log.20261201-100020.gz', '0.log.20261201-100030'], compress: [] });
    assert.deepEqual(planRotation('0.log', ['0.log'], 5), { remove: [], compress: [] });
  });
  test('leftovers of an interrupted round go: temporary files, and an original whose archive exists', () => {
    const names = ['0.log', '0.log.tmp', '0.log.20261201-100000.gz.tmp', '0.log.20261201-100000', '0.log.20261201-100010', '0.log.20261201-100010.gz'];
    assert.deepEqual(planRotation('0.log', names, 5), { remove: ['0.log.tmp', '0.log.20261201-100000.gz.tmp', '0.log.20261201-100010'], compress: ['0.log.20261201-100000'] });
  });
  test("the rotated file's suffix is kubelet's, and sorts in time order", () => {
    assert.equal(rotationSuffix(new Date(2026, 11, 1, 9, 5, 7)), '20261201-090507');
    assert.ok(rotationSuffix(new Date(2026, 11, 1, 9, 5, 7)) < rotationSuffix(new Date(2026, 11, 1, 10, 0, 0)));
  });
  test('kubelet mode passes the same settings in its KubeletConfiguration', () => {
    const k = kubeletConfiguration({
      kubeconfig: '/k', nodeName: 'n', nodeIP: '192.0.2.1', criSocket: '/s', port: 10250, clientCAFile: undefined, tlsCertFile: undefined, tlsKeyFile: undefined,
      anonymousAuth: false, staticPodPath: '/m', maxPods: 110, nodeLabels: {}, taints: [], configPath: '/c', rootDir: '/r',
      containerLogs: { maxSize: '64Ki', maxFiles: 3, monitorInterval: '3s' },
    });
    assert.equal(k.containerLogMaxSize, '64Ki');
    assert.equal(k.containerLogMaxFiles, 3);
    assert.equal(k.containerLogMonitorInterval, '3s');
  });
});

/** conmon's side of ReopenContainerLog: a new, empty file at the path. */
function fakeRuntime(logs: Record<string, string>, o: { failReopen?: boolean } = {}): ContainerLogRuntime & { reopened: string[] } {
  const reopened: string[] = [];
  return {
    reopened,
    runningContainers: async () => Object.keys(logs),
    logPath: async (id) => logs[id]!,
    reopenLog: async (id) => {
      if (o.failReopen) throw new Error('ReopenContainerLog: container is not running');
      reopened.push(id);
      await appendFile(logs[id]!, '');
    },
  };
}

describe('rotation rounds over real files', () => {
  test('a log over the size is renamed and reopened; after many rounds at most maxFiles files, older ones gzipped', async () => {
    const dir = await folders.fresh('rounds');
    const log = join(dir, '0.log');
    const small = join(dir, 'small.log');
    await writeFile(small, 'x\n');
    const runtime = fakeRuntime({ a: log, b: small });
    let clock = new Date(2026, 11, 1, 10, 0, 0).getTime();
    const m = new ContainerLogManager({ runtime, policy: { maxSizeBytes: 1024, maxFiles: 3, monitorIntervalMs: 3000 }, log: quiet, now: () => new Date((clock += 1000)) });
    for (let round = 0; round < 6; round++) {
      await writeFile(log, `round ${round}\n`.repeat(200));
      await m.rotateLogs();
    }
    const names = (await readdir(dir)).filter((n) => n.startsWith('0.log')).sort();
    assert.equal(names.length, 3, names.join(' '));
    assert.equal(names[0], '0.log');
    assert.match(names[1]!, /^0\.log\.\d{8}-\d{6}\.gz$/);
    assert.match(names[2]!, /^0\.log\.\d{8}-\d{6}$/);
    assert.equal((await stat(log)).size, 0, 'the current file is the reopened one');
    // The newest rotated file is round 5's, the one before it (compressed) round 4's.
    assert.match(await readFile(join(dir, names[2]!), 'utf8'), /^round 5\n/);
    assert.match(gunzipSync(await readFile(join(dir, names[1]!))).toString(), /^round 4\n/);
    assert.deepEqual(runtime.reopened, ['a', 'a', 'a', 'a', 'a', 'a']);
    assert.equal(await readFile(small, 'utf8'), 'x\n', 'a log under the size is left alone');
  });

  test('a reopen that fails renames the file back, to be tried next round', async () => {
    const dir = await folders.fresh('fail');
    const log = join(dir, '0.log');
    await writeFile(log, 'y'.repeat(4096));
    const m = new ContainerLogManager({ runtime: fakeRuntime({ a: log }, { failReopen: true }), policy: { maxSizeBytes: 1024, maxFiles: 3, monitorIntervalMs: 3000 }, log: quiet });
    await m.rotateLogs();
    assert.deepEqual(await readdir(dir), ['0.log']);
    assert.equal((await stat(log)).size, 4096);
  });

  test('a missing log (lost between rename and reopen) is reopened', async () => {
    const dir = await folders.fresh('missing');
    const log = join(dir, '0.log');
    await writeFile(log, 'z');
    await rename(log, `${log}.20261201-100000`);
    const runtime = fakeRuntime({ a: log });
    await new ContainerLogManager({ runtime, policy: { maxSizeBytes: 1024, maxFiles: 3, monitorIntervalMs: 3000 }, log: quiet }).rotateLogs();
    assert.deepEqual(runtime.reopened, ['a']);
    assert.equal((await stat(log)).size, 0);
  });

  test("a removed container's log goes with every file rotated from it, and no other container's", async () => {
    const dir = await folders.fresh('clean');
    for (const n of ['0.log', '0.log.20261201-100000.gz', '0.log.20261201-100010', '1.log', '1.log.20261201-100000']) await writeFile(join(dir, n), 'x');
    await removeContainerLogs(join(dir, '0.log'));
    assert.deepEqual((await readdir(dir)).sort(), ['1.log', '1.log.20261201-100000']);
    await removeContainerLogs(join(dir, 'gone', '0.log'));
  });

  test('run() ends when its signal does', async () => {
    const stop = new AbortController();
    const done = new ContainerLogManager({ runtime: fakeRuntime({}), policy: { maxSizeBytes: 1024, maxFiles: 3, monitorIntervalMs: 60000 }, log: quiet }).run(stop.signal);
    stop.abort();
    await done;
  });
});
