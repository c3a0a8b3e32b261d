import assert from 'node:assert/strict';
import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';

import { type ContainerEvent, publishLifecycleEvents } from '../../pkg/cri/container_events.js';
import type { ContainerRuntime } from '../../pkg/cri/containers.js';
import type { CriContext } from '../../pkg/cri/context.js';
import { EventBus } from '../../pkg/cri/event_bus.js';
import { ExitWatcher } from '../../pkg/cri/exit_watcher.js';
import type { PodRuntime } from '../../pkg/cri/pods.js';
import { isCode } from '../../pkg/errdefs/errors.js';
import { silentLogger } from '../../pkg/log/logger.js';
import { type ContainerRecord, ContainerStore } from '../../pkg/sandbox/container_store.js';
import { type SandboxRecord, SandboxStore } from '../../pkg/sandbox/sandbox_store.js';
import { eventually } from '../lib/agent.js';
import { containerRecord, sandboxRecord } from '../lib/records.js';

// The event bus on its own, and the lifecycle events the record stores give,
// with real stores in a temp folder and conmon's part played by writing exit files.

let root: string;
let n = 0;
before(async () => {
  root = await mkdtemp(join(tmpdir(), 'usernode-events-'));
});
after(async () => {
  await rm(root, { recursive: true, force: true });
});

describe('EventBus', () => {
  test('every subscriber gets every event, in order', async () => {
    const bus = new EventBus<number>(10);
    const a = bus.subscribe();
    const b = bus.subscribe();
    for (let i = 0; i < 5; i++) bus.publish(i);
    for (const s of [a, b]) {
      const got: number[] = [];
      for (let i = 0; i < 5; i++) got.push((await s.next()).value!);
      assert.deepEqual(got, [0, 1, 2, 3, 4]);
    }
  });

  test('a waiting subscriber is woken by the next event', async () => {
    const bus = new EventBus<string>(10);
    const s = bus.subscribe();
    const next = s.next();
    bus.publish('x');
    assert.deepEqual(await next, { value: 'x', done: false });
  });

  test('a subscriber that falls behind is dropped with ResourceExhausted; the others are not held up', async () => {
    const bus = new EventBus<number>(3);
    const slow = bus.subscribe();
    const fast = bus.subscribe();
    const got: number[] = [];
    for (let i = 0; i < 10; i++) {
      bus.publish(i);
      got.push((await fast.next()).value!);
    }
    assert.deepEqual(got, [0, 1, 2, 3, 4, 5, 6, 7, 8, 9]);
    assert.equal(bus.size, 1);
    const why = await slow.ended;
    assert.ok(isCode(why, 'ResourceExhausted'), String(why));
    assert.match(why!.message, /fell 3 events behind/);
    // Dropped means dropped: not the three it had, not later ones.
    await assert.rejects(slow.next(), (e: unknown) => isCode(e, 'ResourceExhausted'));
    bus.publish(10);
    await assert.rejects(slow.next(), (e: unknown) => isCode(e, 'ResourceExhausted'));
  });

  test('close() ends a subscription (done, no error) and lets it go; closing twice is harmless', async () => {
    const bus = new EventBus<number>(3);
    const s = bus.subscribe();
    const waiting = s.next();
    s.close();
    s.close();
    assert.deepEqual(await waiting, { value: undefined, done: true });
    assert.equal(await s.ended, undefined);
    assert.equal(bus.size, 0);
    bus.publish(1);
    assert.deepEqual(await s.next(), { value: undefined, done: true });
  });

  test('for await ends when the bus closes, after the events already queued', async () => {
    const bus = new EventBus<number>(5);
    const s = bus.subscribe();
    bus.publish(1);
    bus.publish(2);
    bus.close();
    const got: number[] = [];
    for await (const e of s) got.push(e);
    assert.deepEqual(got, [1, 2]);
    const late = bus.subscribe();
    assert.deepEqual(await late.next(), { value: undefined, done: true });
    assert.equal(bus.size, 0);
  });

  test('leaving a for await loop early unsubscribes', async () => {
    const bus = new EventBus<number>(5);
    const s = bus.subscribe();
    bus.publish(1);
    for await (const e of s) {
      assert.equal(e, 1);
      break;
    }
    assert.equal(bus.size, 0);
  });
});

interface Bed {
  ctx: CriContext;
  events: ContainerEvent[];
  exitDir: string;
  containers: ContainerRuntime;
}

async function bed(): Promise<Bed> {
  const dir = join(root, `b${++n}`);
  const exitDir = join(dir, 'exits');
  await mkdir(exitDir, { recursive: true });
  const containerStore = new ContainerStore(join(dir, 'containers'));
  const sandboxStore = new SandboxStore(join(dir, 'sandboxes'));
  await containerStore.init();
  await sandboxStore.init();
  const containers = { store: containerStore, exitDir, cgroups: { canEnforceLimits: false } } as unknown as ContainerRuntime;
  const ctx = {
    log: silentLogger,
    events: new EventBus<ContainerEvent>(),
    containers,
    pods: { store: sandboxStore } as unknown as PodRuntime,
  } as unknown as CriContext;
  publishLifecycleEvents(ctx);
  const events: ContainerEvent[] = [];
  const sub = ctx.events.subscribe();
  void (async () => {
    for await (const e of sub) events.push(e);
  })();
  return { ctx, events, exitDir, containers };
}

const podId = 'a'.repeat(64);
const ctrId = 'b'.repeat(64);

const sandbox = (over: Partial<SandboxRecord> = {}): SandboxRecord =>
  sandboxRecord({ id: podId, labels: { app: 'web' }, network: { ip: '10.88.0.5', additionalIps: [], cniResult: {} }, ...over });
const container = (over: Partial<ContainerRecord> = {}): ContainerRecord => containerRecord({ id: ctrId, sandboxId: podId, ...over });

/** Runs the watcher around `f`, and stops it after. */
async function watching(containers: ContainerRuntime, rescanMs: number, f: () => Promise<void>): Promise<void> {
  const watcher = new ExitWatcher({ containers, log: silentLogger, rescanMs });
  const stop = new AbortController();
  const run = watcher.run(stop.signal);
  await watcher.ready;
  try {
    await f();
  } finally {
    stop.abort();
    await run;
  }
}

const summary = (events: ContainerEvent[]): string[] => events.map((e) => `${e.containerId === podId ? 'pod' : 'ctr'} ${e.containerEventType}`);

describe('lifecycle events from the record stores', () => {
  test("a pod and its container: each change once, after it is on disk, with the pod's status and its containers' statuses", async () => {
    const { ctx, events } = await bed();
    const pods = ctx.pods.store;
    const ctrs = ctx.containers.store;
    await pods.add(sandbox());
    await ctrs.add(container());
    await ctrs.update({ ...container(), state: 'CONTAINER_RUNNING', startedAt: '3' });
    await ctrs.update({ ...container(), state: 'CONTAINER_RUNNING', startedAt: '3', pid: 43 }); // no state change: no event
    await ctrs.update({ ...container(), state: 'CONTAINER_EXITED', startedAt: '3', finishedAt: '4', exitCode: 3, reason: 'Error' });
    await pods.update({ ...sandbox(), state: 'SANDBOX_NOTREADY' });
    await ctrs.delete(ctrId);
    await pods.delete(podId);
    await eventually('the events', async () => (events.length >= 8 ? true : undefined), 10000);
    assert.deepEqual(summary(events), [
      'pod CONTAINER_CREATED_EVENT',
      'pod CONTAINER_STARTED_EVENT',
      'ctr CONTAINER_CREATED_EVENT',
      'ctr CONTAINER_STARTED_EVENT',
      'ctr CONTAINER_STOPPED_EVENT',
      'pod CONTAINER_STOPPED_EVENT',
      'ctr CONTAINER_DELETED_EVENT',
      'pod CONTAINER_DELETED_EVENT',
    ]);
    const stopped = events[4]!;
    assert.equal(stopped.podSandboxStatus?.id, podId);
    assert.equal(stopped.podSandboxStatus?.state, 'SANDBOX_READY');
    assert.equal(stopped.podSandboxStatus?.network?.ip, '10.88.0.5');
    assert.deepEqual(
      stopped.containersStatuses?.map((s) => [s.id, s.state, s.exitCode, s.reason]),
      [[ctrId, 'CONTAINER_EXITED', 3, 'Error']],
    );
    assert.match(String(stopped.createdAt), /^\d{19}$/);
    // The pod's own events name it as the container; its last status rides on DELETED.
    const podDeleted = events[7]!;
    assert.equal(podDeleted.podSandboxStatus?.state, 'SANDBOX_NOTREADY');
    assert.deepEqual(podDeleted.containersStatuses, []);
    assert.deepEqual(events[6]!.containersStatuses, [], 'a deleted container is not among the statuses');
  });

  test('a container that exits by itself is STOPPED by the exit watcher, with no status call', async () => {
    const { ctx, events, exitDir, containers } = await bed();
    await ctx.pods.store.add(sandbox());
    await ctx.containers.store.add(container({ state: 'CONTAINER_RUNNING', startedAt: '3' }));
    await watching(containers, 600000, async () => {
      // conmon writes the exit file atomically: a temp file renamed into place.
      await writeFile(join(exitDir, `${ctrId}.tmp1`), '7');
      const { rename } = await import('node:fs/promises');
      await rename(join(exitDir, `${ctrId}.tmp1`), join(exitDir, ctrId));
      const ev = await eventually('the STOPPED event', async () => events.find((e) => e.containerEventType === 'CONTAINER_STOPPED_EVENT'), 20000);
      assert.equal(ev.containerId, ctrId);
      assert.equal(ev.containersStatuses?.[0]?.exitCode, 7);
      const r = ctx.containers.store.get(ctrId);
      assert.equal(r.state, 'CONTAINER_EXITED');
      assert.equal(r.exitCode, 7);
    });
    assert.equal(events.filter((e) => e.containerEventType === 'CONTAINER_STOPPED_EVENT').length, 1, 'one exit, one event');
  });

  test('a process that exits before StartContainer records RUNNING is still STOPPED at once', async () => {
    const { ctx, events, exitDir, containers } = await bed();
    await ctx.pods.store.add(sandbox());
    await ctx.containers.store.add(container());
    await watching(containers, 600000, async () => {
      // runc start returned and the process is already gone: conmon's exit file comes before the RUNNING record.
      await writeFile(join(exitDir, ctrId), '0');
      await new Promise((r) => setTimeout(r, 200));
      assert.equal(ctx.containers.store.get(ctrId).state, 'CONTAINER_CREATED');
      await ctx.containers.store.update({ ...container(), state: 'CONTAINER_RUNNING', startedAt: '3' });
      await eventually('the exit to be recorded', async () => (ctx.containers.store.get(ctrId).state === 'CONTAINER_EXITED' ? true : undefined), 20000);
    });
    await eventually('the STOPPED event', async () => events.find((e) => e.containerEventType === 'CONTAINER_STOPPED_EVENT'), 10000);
    assert.deepEqual(summary(events).slice(-3), ['ctr CONTAINER_CREATED_EVENT', 'ctr CONTAINER_STARTED_EVENT', 'ctr CONTAINER_STOPPED_EVENT']);
  });

  test('exits the watch missed are found by the rescan, and by the first scan at start', async () => {
    const { ctx, events, exitDir, containers } = await bed();
    await ctx.pods.store.add(sandbox());
    const early = 'c'.repeat(64);
    await ctx.containers.store.add(container({ id: early, metadata: { name: 'early', attempt: 0 }, state: 'CONTAINER_RUNNING', startedAt: '3' }));
    await writeFile(join(exitDir, early), '0');
    // Not watching: conmon wrote it while the agent was down.
    await watching(containers, 50, async () => {
      assert.equal(ctx.containers.store.get(early).state, 'CONTAINER_EXITED', 'the first scan did not find the exit');
      assert.equal(ctx.containers.store.get(early).reason, 'Completed');
    });
    assert.ok(events.some((e) => e.containerId === early && e.containerEventType === 'CONTAINER_STOPPED_EVENT'));

    // No watch at all (the folder is not there when the watcher starts): the rescan alone finds the exit.
    await rm(exitDir, { recursive: true });
    await ctx.containers.store.add(container({ state: 'CONTAINER_RUNNING', startedAt: '3' }));
    await watching(containers, 50, async () => {
      await mkdir(exitDir);
      await writeFile(join(exitDir, ctrId), '137');
      await eventually('the rescan to find the exit', async () => (ctx.containers.store.get(ctrId).state === 'CONTAINER_EXITED' ? true : undefined), 20000);
      assert.equal(ctx.containers.store.get(ctrId).exitCode, 137);
    });
  });

  test('a late exit write does not bring a removed container back', async () => {
    const { ctx } = await bed();
    const store = ctx.containers.store;
    await store.add(container({ state: 'CONTAINER_RUNNING' }));
    const stale = store.get(ctrId);
    const removed = store.delete(ctrId);
    const late = store.update({ ...stale, state: 'CONTAINER_EXITED' });
    await Promise.all([removed, late]);
    assert.equal(store.find(ctrId), undefined);
    const again = new ContainerStore(join(root, `b${n}`, 'containers'));
    await again.init();
    assert.equal(again.find(ctrId), undefined, 'the record came back on disk');
  });
});
