import assert from 'node:assert/strict';
import { mkdir, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { describe, test } from 'node:test';

import type { ContainerRuntime } from '../../pkg/cri/containers.js';
import { reconcileContainer, unknownExitCode, unknownExitReason } from '../../pkg/cri/recover.js';
import { silentLogger } from '../../pkg/log/logger.js';
import { type ContainerRecord, ContainerStore } from '../../pkg/sandbox/container_store.js';
import type { RuntimeState } from '../../pkg/sandbox/oci_runtime.js';
import { containerRecord } from '../lib/records.js';
import { tempFolders } from '../lib/unit.js';

// A container's state after a restart of the runtime half (recover.ts): from
// conmon's exit file, and from runc when conmon is gone.

const folders = tempFolders('usernode-recover-');
const id = 'c'.repeat(64);

interface Bed {
  c: ContainerRuntime;
  exitDir: string;
  kills: string[];
  asked: { state: number };
}

async function bed(o: { monitorAlive: boolean; runc: RuntimeState | undefined; record: Partial<ContainerRecord> }): Promise<Bed> {
  const dir = await folders.fresh('bed');
  const exitDir = join(dir, 'exits');
  await mkdir(exitDir);
  const store = new ContainerStore(join(dir, 'records'));
  await store.init();
  await store.add(containerRecord({ id, sandboxId: 'p'.repeat(64), bundle: join(dir, 'bundle'), ...o.record }));
  const kills: string[] = [];
  const asked = { state: 0 };
  const c = {
    store,
    exitDir,
    cgroups: { canEnforceLimits: false },
    monitor: { alive: async () => o.monitorAlive },
    runtime: {
      state: async () => {
        asked.state++;
        return o.runc;
      },
      kill: async (_id: string, signal: string) => {
        kills.push(signal);
      },
    },
  } as unknown as ContainerRuntime;
  return { c, exitDir, kills, asked };
}

describe('container state after a restart', () => {
  test('running under a live conmon: adopted as is, runc not asked', async () => {
    const b = await bed({ monitorAlive: true, runc: { status: 'running', pid: 7 }, record: { state: 'CONTAINER_RUNNING', startedAt: '5' } });
    const r = await reconcileContainer(b.c.store.get(id), b.c, silentLogger);
    assert.equal(r.state, 'CONTAINER_RUNNING');
    assert.equal(b.asked.state, 0);
  });

  test('conmon gone, runc says running: the unmonitored process is killed, and the container exited with an unknown code', async () => {
    const b = await bed({ monitorAlive: false, runc: { status: 'running', pid: 7 }, record: { state: 'CONTAINER_RUNNING', startedAt: '5' } });
    const r = await reconcileContainer(b.c.store.get(id), b.c, silentLogger);
    assert.equal(r.state, 'CONTAINER_EXITED');
    assert.equal(r.exitCode, unknownExitCode);
    assert.equal(r.reason, unknownExitReason);
    assert.match(r.message, /conmon.*runc reported it running/);
    assert.deepEqual(b.kills, ['SIGKILL']);
    assert.equal(b.c.store.get(id).state, 'CONTAINER_EXITED', 'not written to the record');
  });

  test('conmon gone and its runtime folder wiped (runc knows nothing): exited, code unknown', async () => {
    const b = await bed({ monitorAlive: false, runc: undefined, record: { state: 'CONTAINER_RUNNING', startedAt: '5' } });
    const r = await reconcileContainer(b.c.store.get(id), b.c, silentLogger);
    assert.equal(r.state, 'CONTAINER_EXITED');
    assert.equal(r.exitCode, 255);
    assert.match(r.message, /runc does not know it/);
    assert.deepEqual(b.kills, []);
  });

  test('conmon gone after writing the exit file: its exit code, not an unknown one', async () => {
    const b = await bed({ monitorAlive: false, runc: { status: 'stopped', pid: 0 }, record: { state: 'CONTAINER_RUNNING', startedAt: '5' } });
    await writeFile(join(b.exitDir, id), '3');
    const r = await reconcileContainer(b.c.store.get(id), b.c, silentLogger);
    assert.equal(r.state, 'CONTAINER_EXITED');
    assert.equal(r.exitCode, 3);
    assert.equal(r.reason, 'Error');
  });

  test('CREATED record, runc says running (killed between runc start and the record update): adopted as RUNNING', async () => {
    const b = await bed({ monitorAlive: true, runc: { status: 'running', pid: process.pid }, record: { state: 'CONTAINER_CREATED' } });
    const r = await reconcileContainer(b.c.store.get(id), b.c, silentLogger);
    assert.equal(r.state, 'CONTAINER_RUNNING');
    assert.notEqual(r.startedAt, '0');
    assert.deepEqual(b.kills, []);
  });

  test('CREATED record, started and already exited before the restart: EXITED with its code', async () => {
    const b = await bed({ monitorAlive: false, runc: { status: 'stopped', pid: 0 }, record: { state: 'CONTAINER_CREATED' } });
    await writeFile(join(b.exitDir, id), '0');
    const r = await reconcileContainer(b.c.store.get(id), b.c, silentLogger);
    assert.equal(r.state, 'CONTAINER_EXITED');
    assert.equal(r.exitCode, 0);
    assert.equal(r.reason, 'Completed');
  });

  test('CREATED record, created under a live conmon: stays CREATED for StartContainer', async () => {
    const b = await bed({ monitorAlive: true, runc: { status: 'created', pid: 7 }, record: { state: 'CONTAINER_CREATED' } });
    const r = await reconcileContainer(b.c.store.get(id), b.c, silentLogger);
    assert.equal(r.state, 'CONTAINER_CREATED');
  });

  test('CREATED record whose conmon is gone: it can never be started with its output held; killed and exited', async () => {
    const b = await bed({ monitorAlive: false, runc: { status: 'created', pid: 7 }, record: { state: 'CONTAINER_CREATED' } });
    const r = await reconcileContainer(b.c.store.get(id), b.c, silentLogger);
    assert.equal(r.state, 'CONTAINER_EXITED');
    assert.equal(r.exitCode, 255);
    assert.deepEqual(b.kills, ['SIGKILL']);
  });
});
