import assert from 'node:assert/strict';
import { mkdir, mkdtemp, readdir, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, test } from 'node:test';

import { createLogger } from '../../pkg/log/logger.js';
import { PodManager, type PodEvent } from '../../pkg/node/pod_manager.js';
import { parseManifest, type PodManifest } from '../../pkg/node/pod_manifest.js';
import type { PodStatus } from '../../pkg/node/pod_status.js';
import { FakeClock, FakeCri, FakeProber } from '../lib/fake_cri.js';

// The pod worker against an in-memory CRI and a prober the test answers, on
// a clock the test moves: what kubelet would do, as a user sees it in the
// pod's status and events.

const log = createLogger({ level: 'error', component: 'test', write: () => {} });

function podOf(yaml: string): PodManifest {
  return parseManifest(`apiVersion: v1\nkind: Pod\n${yaml}`, '/m/p.yaml')[0]!;
}

function bed(opts: { memoryCapacityBytes?: number; podsDir?: string; logRoot?: string } = {}) {
  const clock = new FakeClock();
  const cri = new FakeCri(clock);
  const prober = new FakeProber();
  const events: Array<PodEvent & { pod: string }> = [];
  const statuses: PodStatus[] = [];
  const terminated: string[] = [];
  const order: string[] = [];
  const make = (): PodManager =>
    new PodManager({
      cri: cri.clients(),
      log,
      logRoot: opts.logRoot ?? '/nonexistent/logs',
      ...(opts.podsDir ? { podsDir: opts.podsDir } : {}),
      // No pod here has volumes; nothing is written under these.
      volumeRoot: opts.podsDir ?? '/nonexistent/pods',
      memoryVolumeRoot: '/nonexistent/memory',
      now: clock.now,
      // The hook's time passes after the other containers' stops have been asked for, as it would.
      sleep: async (ms) => {
        await new Promise((r) => setImmediate(r));
        clock.advance(ms);
      },
      prober,
      runtimeName: 'usernode',
      hostIP: '192.0.2.10',
      memoryCapacityBytes: opts.memoryCapacityBytes ?? 8 * 2 ** 30,
      onEvent: (p, e) => {
        events.push({ ...e, pod: p.name });
        order.push(`event:${e.reason}`);
      },
      onStatus: (_p, s) => {
        statuses.push(s);
        order.push(`status:${s.phase}`);
      },
      onTerminated: (p) => {
        terminated.push(p.uid);
        order.push('terminated');
      },
    });
  const pm = make();
  const last = (): PodStatus => statuses.at(-1)!;
  const reasons = (container?: string): string[] => events.filter((e) => container === undefined || e.container === container).map((e) => e.reason);
  return { clock, cri, prober, events, statuses, terminated, order, pm, make, last, reasons };
}

const cstatus = (s: PodStatus, name: string) => [...s.initContainerStatuses, ...s.containerStatuses].find((c) => c.name === name)!;
const cond = (s: PodStatus, type: string) => s.conditions.find((c) => c.type === type)!;

describe('pod worker: init containers', () => {
  const yaml = `metadata: { name: web }
spec:
  initContainers:
    - { name: one, image: "busybox:1", command: [sh, -c, "echo 1"] }
    - { name: two, image: "busybox:1", command: [sh, -c, "echo 2"] }
  containers:
    - { name: app, image: "busybox:1" }
`;
  test('run one at a time, in order, each to success, before the app; a failed one is retried with back-off', async () => {
    const b = bed();
    const pod = podOf(yaml);
    b.pm.setDesired([pod]);
    await b.pm.syncOnce();
    assert.deepEqual([...b.cri.containers.values()].map((c) => c.metadata.name), ['one']);
    assert.equal(b.last().phase, 'Pending');
    assert.deepEqual(cstatus(b.last(), 'app').state, { waiting: { reason: 'PodInitializing' } });
    assert.equal(cond(b.last(), 'Initialized').status, 'False');
    assert.equal(cond(b.last(), 'Initialized').message, 'containers with incomplete status: [one two]');
    await b.pm.syncOnce();
    assert.equal(b.cri.named('two').length, 0, 'the second started before the first finished');
    b.cri.exit('one', 0);
    await b.pm.syncOnce();
    assert.equal(b.cri.latest('two')?.state, 'CONTAINER_RUNNING');
    assert.equal(b.cri.named('app').length, 0);
    // A failure: restarted at once the first time, then after 10 s.
    b.cri.exit('two', 1);
    await b.pm.syncOnce();
    assert.equal(b.cri.latest('two')?.metadata.attempt, 1);
    b.cri.exit('two', 1);
    await b.pm.syncOnce();
    assert.deepEqual(Object.keys(cstatus(b.last(), 'two').state), ['waiting']);
    assert.match(JSON.stringify(cstatus(b.last(), 'two').state), /CrashLoopBackOff/);
    assert.equal(b.last().phase, 'Pending');
    b.clock.advance(10000);
    await b.pm.syncOnce();
    assert.equal(b.cri.latest('two')?.metadata.attempt, 2);
    b.cri.exit('two', 0);
    await b.pm.syncOnce();
    assert.equal(b.cri.latest('app')?.state, 'CONTAINER_RUNNING');
    assert.equal(b.last().phase, 'Running');
    assert.equal(cond(b.last(), 'Initialized').status, 'True');
    assert.equal(cstatus(b.last(), 'two').restartCount, 2);
    assert.deepEqual((cstatus(b.last(), 'one').state as { terminated: { exitCode: number; reason: string } }).terminated.reason, 'Completed');
  });

  test('an agent restart does not run finished init containers again, nor restart the app', async () => {
    const b = bed();
    const pod = podOf(yaml);
    b.pm.setDesired([pod]);
    await b.pm.syncOnce();
    b.cri.exit('one', 0);
    await b.pm.syncOnce();
    b.cri.exit('two', 0);
    await b.pm.syncOnce();
    const app = b.cri.latest('app')!.id;
    const again = b.make();
    again.setDesired([pod]);
    const before = b.cri.calls.length;
    b.clock.advance(60000);
    await again.syncOnce();
    assert.deepEqual(b.cri.calls.slice(before).filter((c) => c.method === 'CreateContainer' || c.method === 'StartContainer'), []);
    assert.equal(b.cri.latest('app')!.id, app);
    assert.equal(again.statuses().get(pod.uid)?.phase, 'Running');
    assert.equal(again.statuses().get(pod.uid)?.startTime, '2026-12-01T10:00:00Z', 'the start time is when the pod started, not when the agent came back');
  });

  test('a sidecar (restartPolicy Always) starts first, runs beside the app, is restarted whatever the pod policy, and stops last', async () => {
    const b = bed();
    const pod = podOf(`metadata: { name: side }\nspec:\n  restartPolicy: Never\n  initContainers:\n    - { name: proxy, image: "busybox:1", restartPolicy: Always }\n    - { name: setup, image: "busybox:1" }\n  containers:\n    - { name: app, image: "busybox:1" }\n`);
    b.pm.setDesired([pod]);
    await b.pm.syncOnce();
    assert.equal(b.cri.latest('proxy')?.state, 'CONTAINER_RUNNING');
    assert.equal(b.cri.latest('setup')?.state, 'CONTAINER_RUNNING');
    b.cri.exit('setup', 0);
    await b.pm.syncOnce();
    assert.equal(b.cri.latest('app')?.state, 'CONTAINER_RUNNING');
    b.cri.exit('proxy', 1);
    await b.pm.syncOnce();
    assert.equal(b.cri.latest('proxy')?.metadata.attempt, 1);
    assert.equal(b.last().phase, 'Running');
    assert.equal(cond(b.last(), 'Ready').status, 'True');
    b.pm.setDesired([]);
    await b.pm.syncOnce();
    await b.pm.settled();
    assert.deepEqual(b.events.filter((e) => e.reason === 'Killing').map((e) => e.container), ['app', 'proxy']);
  });

  test('restartPolicy Never: a failed init container fails the pod; the app never starts', async () => {
    const b = bed();
    b.pm.setDesired([podOf(yaml.replace('spec:\n', 'spec:\n  restartPolicy: Never\n'))]);
    await b.pm.syncOnce();
    b.cri.exit('one', 2);
    await b.pm.syncOnce();
    await b.pm.syncOnce();
    assert.equal(b.last().phase, 'Failed');
    assert.equal(b.cri.named('one').length, 1);
    assert.equal(b.cri.named('app').length, 0);
  });
});

describe('pod worker: restart policy, back-off, phase', () => {
  const crasher = (policy: string) => podOf(`metadata: { name: crasher }\nspec:\n  restartPolicy: ${policy}\n  containers:\n    - { name: crash, image: "busybox:1" }\n`);

  test('CrashLoopBackOff: the back-off doubles, with kubelet reason, message and BackOff event', async () => {
    const b = bed();
    const pod = crasher('Always');
    b.pm.setDesired([pod]);
    await b.pm.syncOnce();
    b.cri.exit('crash', 1);
    await b.pm.syncOnce();
    assert.equal(b.cri.latest('crash')?.metadata.attempt, 1, 'the first restart is at once');
    b.cri.exit('crash', 1);
    await b.pm.syncOnce();
    const waiting = (s: PodStatus) => (cstatus(s, 'crash').state as { waiting?: { reason: string; message: string } }).waiting;
    assert.deepEqual(waiting(b.last()), { reason: 'CrashLoopBackOff', message: `back-off 10s restarting failed container=crash pod=crasher_default(${pod.uid})` });
    assert.equal(cstatus(b.last(), 'crash').restartCount, 1);
    assert.equal((cstatus(b.last(), 'crash').lastState as { terminated: { exitCode: number } }).terminated.exitCode, 1);
    assert.equal(b.last().phase, 'Running');
    assert.ok(b.reasons('crash').includes('BackOff'));
    b.clock.advance(9000);
    await b.pm.syncOnce();
    assert.equal(b.cri.latest('crash')?.metadata.attempt, 1, 'restarted inside the back-off');
    b.clock.advance(1000);
    await b.pm.syncOnce();
    assert.equal(b.cri.latest('crash')?.metadata.attempt, 2);
    b.cri.exit('crash', 1);
    await b.pm.syncOnce();
    assert.match(waiting(b.last())!.message, /^back-off 20s /);
    b.clock.advance(20000);
    await b.pm.syncOnce();
    assert.equal(b.cri.latest('crash')?.metadata.attempt, 3);
    assert.deepEqual(b.cri.named('crash').map((c) => c.metadata.attempt), [2, 3], 'one exited container is kept');
  });

  test('phase: Never and a failure → Failed; OnFailure and success → Succeeded; OnFailure and a failure → restarted', async () => {
    const never = bed();
    never.pm.setDesired([crasher('Never')]);
    await never.pm.syncOnce();
    never.cri.exit('crash', 3);
    await never.pm.syncOnce();
    assert.equal(never.last().phase, 'Failed');
    assert.equal(cond(never.last(), 'Ready').reason, 'PodCompleted');
    assert.equal(never.cri.named('crash').length, 1);

    const ok = bed();
    ok.pm.setDesired([crasher('OnFailure')]);
    await ok.pm.syncOnce();
    ok.cri.exit('crash', 0);
    await ok.pm.syncOnce();
    assert.equal(ok.last().phase, 'Succeeded');
    assert.equal(ok.cri.named('crash').length, 1);

    const again = bed();
    again.pm.setDesired([crasher('OnFailure')]);
    await again.pm.syncOnce();
    again.cri.exit('crash', 1);
    await again.pm.syncOnce();
    assert.equal(again.cri.latest('crash')?.metadata.attempt, 1);
    assert.equal(again.last().phase, 'Running');
  });

  test('status: container and pod fields as kubelet reports them; sent only when it changes', async () => {
    const b = bed();
    const pod = crasher('Always');
    b.pm.setDesired([pod]);
    await b.pm.syncOnce();
    const s = b.last();
    const c = cstatus(s, 'crash');
    assert.equal(c.containerID, `usernode://${b.cri.latest('crash')!.id}`);
    assert.equal(c.image, 'busybox:1');
    assert.match(c.imageID, /^sha256:/);
    assert.deepEqual(c.state, { running: { startedAt: '2026-12-01T10:00:00Z' } });
    assert.equal(c.ready, true, 'no readiness probe: ready when running');
    assert.equal(c.started, true);
    assert.equal(s.podIP, b.cri.sandboxes.values().next().value!.ip);
    assert.deepEqual(s.hostIPs, [{ ip: '192.0.2.10' }]);
    assert.equal(s.startTime, '2026-12-01T10:00:00Z');
    assert.deepEqual(s.conditions.map((x) => [x.type, x.status]), [['PodReadyToStartContainers', 'True'], ['Initialized', 'True'], ['ContainersReady', 'True'], ['Ready', 'True']]);
    const n = b.statuses.length;
    b.clock.advance(5000);
    await b.pm.syncOnce();
    assert.equal(b.statuses.length, n, 'an unchanged status was sent again');
    assert.deepEqual(b.reasons('crash'), ['Pulling', 'Pulled', 'Created', 'Started']);
    assert.deepEqual(b.pm.statuses().get(pod.uid), s);
  });

  test('termination messages: the file mounted at terminationMessagePath, else the end of the log (FallbackToLogsOnError)', async () => {
    const tmp = await mkdtemp(join(tmpdir(), 'pod-worker-'));
    try {
      const b = bed({ podsDir: join(tmp, 'pods'), logRoot: join(tmp, 'logs') });
      const pod = podOf(`metadata: { name: msg }\nspec:\n  restartPolicy: Never\n  containers:\n    - { name: file, image: "busybox:1", terminationMessagePath: /tmp/why }\n    - { name: logs, image: "busybox:1", terminationMessagePolicy: FallbackToLogsOnError }\n`);
      b.pm.setDesired([pod]);
      await b.pm.syncOnce();
      const mounts = b.cri.calls.filter((c) => c.method === 'CreateContainer').map((c) => (c.req.config as { mounts: Array<{ containerPath: string; hostPath: string }> }).mounts);
      assert.equal(mounts[0]![0]!.containerPath, '/tmp/why');
      assert.equal(mounts[1]![0]!.containerPath, '/dev/termination-log');
      // What the containers would have written.
      await writeFile(mounts[0]![0]!.hostPath, 'config file missing');
      const logDir = join(tmp, 'logs', `default_msg_${pod.uid}`, 'logs');
      await mkdir(logDir, { recursive: true });
      await writeFile(join(logDir, '0.log'), '2026-12-01T10:00:00.000000000Z stderr F panic: no config\n');
      b.cri.exit('file', 2);
      b.cri.exit('logs', 1);
      await b.pm.syncOnce();
      const msg = (name: string) => (cstatus(b.last(), name).state as { terminated: { message?: string } }).terminated.message;
      assert.equal(msg('file'), 'config file missing');
      assert.equal(msg('logs'), 'panic: no config\n');
      b.pm.setDesired([]);
      await b.pm.syncOnce();
      await b.pm.settled();
      assert.deepEqual(await readdir(join(tmp, 'pods')), [], "a stopped pod's files were left behind");
    } finally {
      await rm(tmp, { recursive: true, force: true });
    }
  });

  test('image pull failures: ErrImagePull, then ImagePullBackOff; Never with no image: ErrImageNeverPull', async () => {
    const b = bed();
    b.pm.setDesired([crasher('Always')]);
    b.cri.failNext.set('PullImage', new Error('manifest unknown'));
    await b.pm.syncOnce();
    assert.equal((cstatus(b.last(), 'crash').state as { waiting: { reason: string } }).waiting.reason, 'ErrImagePull');
    await b.pm.syncOnce();
    assert.equal((cstatus(b.last(), 'crash').state as { waiting: { reason: string } }).waiting.reason, 'ImagePullBackOff');
    assert.equal(b.last().phase, 'Pending');
    b.clock.advance(10000);
    await b.pm.syncOnce();
    assert.equal(b.cri.latest('crash')?.state, 'CONTAINER_RUNNING');
    assert.ok(b.events.some((e) => e.reason === 'Failed' && /Failed to pull image "busybox:1": .*manifest unknown/.test(e.message)));

    const n = bed();
    n.pm.setDesired([podOf(`metadata: { name: p }\nspec:\n  containers:\n    - { name: c, image: "busybox:1", imagePullPolicy: Never }\n`)]);
    await n.pm.syncOnce();
    assert.equal((cstatus(n.last(), 'c').state as { waiting: { reason: string } }).waiting.reason, 'ErrImageNeverPull');
  });
});

describe('pod worker: probes', () => {
  const probed = (probes: string) => podOf(`metadata: { name: probed }\nspec:\n  terminationGracePeriodSeconds: 15\n  containers:\n    - name: app\n      image: "busybox:1"\n${probes}`);

  test('liveness failures past the threshold: Unhealthy events, Killing, the container stopped with the grace and restarted', async () => {
    const b = bed();
    b.pm.setDesired([probed('      livenessProbe: { exec: { command: [alive] }, periodSeconds: 5, failureThreshold: 2 }\n')]);
    await b.pm.syncOnce();
    const first = b.cri.latest('app')!.id;
    await b.pm.probeOnce();
    assert.equal(b.prober.ran('alive'), 1);
    b.prober.answers.set('alive', 'failure');
    b.clock.advance(5000);
    await b.pm.probeOnce();
    await b.pm.probeOnce();
    assert.equal(b.prober.ran('alive'), 2, 'probed before its period');
    assert.deepEqual(b.reasons('app').filter((r) => r === 'Unhealthy').length, 1);
    await b.pm.syncOnce();
    assert.equal(b.cri.latest('app')!.id, first, 'killed below the failure threshold');
    b.clock.advance(5000);
    await b.pm.probeOnce();
    await b.pm.syncOnce();
    const stop = b.cri.calls.find((c) => c.method === 'StopContainer')!;
    assert.deepEqual(stop.req, { containerId: first, timeout: 15 });
    assert.equal(b.cri.latest('app')!.metadata.attempt, 1);
    assert.equal(b.cri.latest('app')!.state, 'CONTAINER_RUNNING');
    const unhealthy = b.events.filter((e) => e.reason === 'Unhealthy');
    assert.equal(unhealthy.length, 2);
    assert.equal(unhealthy[0]!.type, 'Warning');
    assert.equal(unhealthy[0]!.message, 'Liveness probe failed: alive: nope');
    assert.ok(b.events.some((e) => e.reason === 'Killing' && e.message === 'Container app failed liveness probe, will be restarted'));
    assert.equal(cstatus(b.last(), 'app').restartCount, 1);
    assert.equal((cstatus(b.last(), 'app').lastState as { terminated: { exitCode: number } }).terminated.exitCode, 143);
  });

  test('probes that go on failing while the container takes its grace to stop do not kill the next one', async () => {
    const b = bed();
    b.pm.setDesired([probed('      livenessProbe: { exec: { command: [alive] }, periodSeconds: 1, failureThreshold: 1 }\n')]);
    await b.pm.syncOnce();
    b.prober.answers.set('alive', 'failure');
    await b.pm.probeOnce();
    b.cri.beforeStop = async () => {
      for (let i = 0; i < 5; i++) {
        b.clock.advance(1000);
        await b.pm.probeOnce();
      }
    };
    await b.pm.syncOnce();
    assert.equal(b.prober.ran('alive'), 1, 'probed a container being killed');
    b.prober.answers.set('alive', 'success');
    const second = b.cri.latest('app')!;
    assert.equal(second.metadata.attempt, 1);
    await b.pm.syncOnce();
    assert.equal(b.cri.latest('app')!.id, second.id);
    assert.equal(second.state, 'CONTAINER_RUNNING');
  });

  test("readiness flips the container's ready and the Ready condition, keeping lastTransitionTime while unchanged", async () => {
    const b = bed();
    b.pm.setDesired([probed('      readinessProbe: { exec: { command: [ready] }, periodSeconds: 1, failureThreshold: 1 }\n')]);
    b.prober.answers.set('ready', 'failure');
    await b.pm.syncOnce();
    assert.equal(cstatus(b.last(), 'app').ready, false);
    assert.equal(cond(b.last(), 'Ready').status, 'False');
    assert.equal(cond(b.last(), 'Ready').message, 'containers with unready status: [app]');
    b.prober.answers.set('ready', 'success');
    b.clock.advance(1000);
    await b.pm.probeOnce();
    await b.pm.syncOnce();
    assert.equal(cstatus(b.last(), 'app').ready, true);
    assert.equal(cond(b.last(), 'Ready').status, 'True');
    assert.equal(cond(b.last(), 'Ready').lastTransitionTime, '2026-12-01T10:00:01Z');
    b.clock.advance(1000);
    await b.pm.probeOnce();
    await b.pm.syncOnce();
    assert.equal(cond(b.last(), 'Ready').lastTransitionTime, '2026-12-01T10:00:01Z');
    b.prober.answers.set('ready', 'failure');
    b.clock.advance(1000);
    await b.pm.probeOnce();
    await b.pm.syncOnce();
    assert.equal(cond(b.last(), 'Ready').status, 'False');
    assert.equal(cond(b.last(), 'ContainersReady').status, 'False');
    assert.equal(b.cri.named('app').length, 1, 'readiness never restarts');
  });

  test('the startup probe gates liveness and readiness; initialDelaySeconds is waited', async () => {
    const b = bed();
    b.pm.setDesired([probed('      startupProbe: { exec: { command: [up] }, periodSeconds: 1, failureThreshold: 30, initialDelaySeconds: 2 }\n      livenessProbe: { exec: { command: [alive] }, periodSeconds: 1 }\n      readinessProbe: { exec: { command: [ready] }, periodSeconds: 1 }\n')]);
    b.prober.answers.set('up', 'failure');
    await b.pm.syncOnce();
    await b.pm.probeOnce();
    assert.equal(b.prober.ran('up'), 0, 'probed inside the initial delay');
    for (let i = 0; i < 5; i++) {
      b.clock.advance(1000);
      await b.pm.probeOnce();
    }
    assert.equal(b.prober.ran('up'), 4);
    assert.equal(b.prober.ran('alive') + b.prober.ran('ready'), 0, 'liveness or readiness before startup passed');
    await b.pm.syncOnce();
    assert.equal(cstatus(b.last(), 'app').started, false);
    assert.equal(cstatus(b.last(), 'app').ready, false);
    b.prober.answers.set('up', 'success');
    b.clock.advance(1000);
    await b.pm.probeOnce();
    b.clock.advance(1000);
    await b.pm.probeOnce();
    await b.pm.syncOnce();
    assert.ok(b.prober.ran('alive') >= 1 && b.prober.ran('ready') >= 1);
    assert.equal(b.prober.ran('up'), 5, 'the startup probe ran on after it passed');
    assert.equal(cstatus(b.last(), 'app').started, true);
    assert.equal(cstatus(b.last(), 'app').ready, true);
  });

  test('postStart runs after the start; its failure kills the container with FailedPostStartHook', async () => {
    const b = bed();
    b.pm.setDesired([probed('      lifecycle: { postStart: { exec: { command: [hook] } } }\n')]);
    b.prober.answers.set('hook', 'failure');
    await b.pm.syncOnce();
    const methods = b.cri.methods();
    assert.ok(methods.indexOf('StartContainer') < methods.indexOf('StopContainer'));
    assert.equal(b.prober.calls[0]!.target.containerId, b.cri.named('app')[0]!.id);
    assert.ok(b.reasons('app').includes('FailedPostStartHook'));
    assert.equal(b.cri.named('app')[0]!.state, 'CONTAINER_EXITED');
  });
});

describe('pod worker: graceful deletion', () => {
  const yaml = `metadata: { name: web }\nspec:\n  terminationGracePeriodSeconds: 30\n  containers:\n    - name: app\n      image: "busybox:1"\n      lifecycle: { preStop: { exec: { command: [drain] } } }\n    - { name: side, image: "busybox:1" }\n`;

  test('deletionTimestamp: preStop, StopContainer with the deletion grace, final status with exit codes, sandbox removed, onTerminated', async () => {
    const b = bed();
    const pod = podOf(yaml);
    b.pm.setDesired([pod]);
    await b.pm.syncOnce();
    const sandbox = [...b.cri.sandboxes.keys()][0]!;
    const from = b.cri.calls.length;
    b.order.length = 0;
    b.pm.setDesired([{ ...pod, deletionTimestamp: '2026-12-01T10:00:00Z', deletionGracePeriodSeconds: 20 }]);
    await b.pm.syncOnce();
    await b.pm.settled();
    const calls = b.cri.calls.slice(from).filter((c) => ['StopContainer', 'StopPodSandbox', 'RemovePodSandbox'].includes(c.method));
    assert.deepEqual(
      calls.map((c) => [c.method, c.req.timeout ?? c.req.podSandboxId]),
      [['StopContainer', 20], ['StopContainer', 20], ['StopPodSandbox', sandbox], ['RemovePodSandbox', sandbox]],
    );
    assert.equal(b.prober.ran('drain'), 1);
    assert.ok(b.events.filter((e) => e.reason === 'Killing').map((e) => e.message).includes('Stopping container app'));
    assert.deepEqual(b.terminated, [pod.uid]);
    const final = b.last();
    assert.equal(final.phase, 'Failed', 'killed containers (143) end a deleted pod Failed');
    assert.equal((cstatus(final, 'app').state as { terminated: { exitCode: number } }).terminated.exitCode, 143);
    assert.deepEqual(b.order.slice(-2), ['status:Failed', 'terminated']);
    await b.pm.syncOnce();
    assert.equal(b.cri.containers.size, 0);
    assert.deepEqual(b.terminated, [pod.uid], 'terminated twice');
  });

  test('the grace left after a slow preStop is what StopContainer gets', async () => {
    const b = bed();
    const pod = podOf(yaml.replace('exec: { command: [drain] }', 'sleep: { seconds: 25 }'));
    b.pm.setDesired([pod]);
    await b.pm.syncOnce();
    b.pm.setDesired([]);
    await b.pm.syncOnce();
    await b.pm.settled();
    const stops = b.cri.calls.filter((c) => c.method === 'StopContainer').map((c) => c.req.timeout);
    assert.deepEqual(stops.sort(), [30, 5].sort(), 'the container without a hook has the whole grace; the hooked one what is left');
    assert.equal(b.terminated.length, 1);
    assert.equal(b.pm.statuses().size, 0, 'a static pod removed leaves no status behind');
  });

  test('a pod deleted before it ran is terminated at once', async () => {
    const b = bed();
    const pod = { ...podOf(yaml), deletionTimestamp: '2026-12-01T10:00:00Z' };
    b.pm.setDesired([pod]);
    await b.pm.syncOnce();
    assert.deepEqual(b.terminated, [pod.uid]);
    assert.equal(b.cri.sandboxes.size, 0);
  });
});

describe('pod worker: resources and QoS', () => {
  const resources = (r: string) => podOf(`metadata: { name: r }\nspec:\n  containers:\n    - name: app\n      image: "busybox:1"\n${r}`);
  const created = async (pod: PodManifest, memoryCapacityBytes = 8 * 2 ** 30) => {
    const b = bed({ memoryCapacityBytes });
    b.pm.setDesired([pod]);
    await b.pm.syncOnce();
    const cfg = b.cri.calls.find((c) => c.method === 'CreateContainer')!.req.config as { linux: { resources: Record<string, number> } };
    return { resources: cfg.linux.resources, qos: b.last().qosClass };
  };

  test('Guaranteed: shares from the request, quota from the limit, memory limit, OOM score -997', async () => {
    assert.deepEqual(await created(resources('      resources: { limits: { cpu: 500m, memory: 128Mi } }\n')), {
      resources: { cpuShares: 512, cpuPeriod: 100000, cpuQuota: 50000, memoryLimitInBytes: 128 * 2 ** 20, oomScoreAdj: -997 },
      qos: 'Guaranteed',
    });
  });
  test("the sandbox gets the pod's peak: app containers and sidecars together, or the biggest init container alone", async () => {
    const b = bed();
    b.pm.setDesired([
      podOf(`metadata: { name: r }\nspec:\n  initContainers:\n    - { name: big, image: "busybox:1", resources: { limits: { cpu: "3", memory: 1Gi } } }\n    - { name: side, image: "busybox:1", restartPolicy: Always, resources: { limits: { cpu: 500m, memory: 64Mi } } }\n  containers:\n    - { name: a, image: "busybox:1", resources: { limits: { cpu: "1", memory: 128Mi } } }\n    - { name: b, image: "busybox:1", resources: { limits: { cpu: "1", memory: 128Mi } } }\n`),
    ]);
    await b.pm.syncOnce();
    const sandbox = b.cri.calls.find((c) => c.method === 'RunPodSandbox')!.req.config as { linux: { resources: Record<string, number> } };
    assert.deepEqual(sandbox.linux.resources, { cpuShares: 3072, cpuPeriod: 100000, cpuQuota: 300000, memoryLimitInBytes: 2 ** 30 });
  });

  test('Burstable: OOM score from the memory request against the node; BestEffort: 2 shares, OOM score 1000', async () => {
    assert.deepEqual(await created(resources('      resources: { requests: { cpu: 1m, memory: 2Gi } }\n'), 8 * 2 ** 30), {
      resources: { cpuShares: 2, oomScoreAdj: 750 },
      qos: 'Burstable',
    });
    assert.deepEqual(await created(resources('      resources: { requests: { cpu: "2" }, limits: { cpu: "4" } }\n')), {
      resources: { cpuShares: 2048, cpuPeriod: 100000, cpuQuota: 400000, oomScoreAdj: 999 },
      qos: 'Burstable',
    });
    assert.deepEqual(await created(resources('')), { resources: { cpuShares: 2, oomScoreAdj: 1000 }, qos: 'BestEffort' });
  });
});

describe('pod worker: activeDeadlineSeconds', () => {
  test('a pod active past its deadline is Failed (DeadlineExceeded), its containers stopped and not restarted', async () => {
    const b = bed();
    b.pm.setDesired([podOf('metadata: { name: job }\nspec:\n  activeDeadlineSeconds: 30\n  terminationGracePeriodSeconds: 3\n  containers:\n    - { name: app, image: "busybox:1" }\n')]);
    await b.pm.syncOnce();
    assert.equal(b.cri.latest('app')?.state, 'CONTAINER_RUNNING');
    b.clock.advance(20000);
    await b.pm.syncOnce();
    assert.equal(b.last().phase, 'Running', 'not before the deadline');
    b.clock.advance(11000);
    await b.pm.syncOnce();
    assert.equal(b.last().phase, 'Failed');
    assert.equal(b.last().reason, 'DeadlineExceeded');
    assert.equal(b.cri.latest('app')?.state, 'CONTAINER_EXITED');
    assert.ok(b.reasons().includes('DeadlineExceeded'));
    b.clock.advance(60000);
    await b.pm.syncOnce();
    assert.equal(b.cri.named('app').length, 1, 'never restarted');
    assert.equal(b.last().phase, 'Failed');
  });
});
