import assert from 'node:assert/strict';
import { test } from 'node:test';

import type { CriClients } from '../../proto/client.js';
import { isCode } from '../../pkg/errdefs/errors.js';
import { execProber } from '../../pkg/node/prober_exec.js';
import { rejection } from '../lib/unit.js';

// exec probes through a fake CRI runtime: what ExecSync is asked and how its
// answers become probe outcomes, as kubelet's exec prober reads them.

type ExecSyncReq = { containerId: string; cmd: string[]; timeout: number };
type Answer = { err: (Error & { code: number; details: string }) | null; res?: { stdout: Buffer; stderr: Buffer; exitCode: number } };

function fakeRuntime(answer: Answer): { cri: Pick<CriClients, 'runtime'>; calls: Array<{ req: ExecSyncReq; deadline: number }> } {
  const calls: Array<{ req: ExecSyncReq; deadline: number }> = [];
  const runtime = {
    ExecSync: (req: ExecSyncReq, opts: { deadline: number }, cb: (err: Answer['err'], res?: Answer['res']) => void) => {
      calls.push({ req, deadline: opts.deadline });
      setImmediate(() => cb(answer.err, answer.res));
    },
  };
  return { cri: { runtime } as unknown as Pick<CriClients, 'runtime'>, calls };
}

const out = (stdout: string, stderr: string, exitCode: number): Answer => ({ err: null, res: { stdout: Buffer.from(stdout), stderr: Buffer.from(stderr), exitCode } });
const grpcError = (code: number, details: string): Answer => ({ err: Object.assign(new Error(`${code} ${details}`), { code, details }), res: undefined });
const target = { containerId: 'ctr1', podIP: '10.88.0.2', timeoutMs: 1500 };

test('exit 0 is success; the output is stdout then stderr; the timeout goes to ExecSync in whole seconds', async () => {
  const { cri, calls } = fakeRuntime(out('fine\n', 'warn\n', 0));
  const t0 = Date.now();
  assert.deepEqual(await execProber(cri).run({ kind: 'exec', command: ['cat', '/tmp/healthy'] }, target), { result: 'success', output: 'fine\nwarn\n' });
  assert.deepEqual(calls[0]?.req, { containerId: 'ctr1', cmd: ['cat', '/tmp/healthy'], timeout: 2 });
  assert.ok(calls[0]!.deadline >= t0 + 2000, 'the call outlives the command timeout');
});

test('a non-zero exit is a failure with the output, cut at 10 KiB', async () => {
  const { cri } = fakeRuntime(out('x'.repeat(20000), '', 1));
  const o = await execProber(cri).run({ kind: 'exec', command: ['false'] }, target);
  assert.equal(o.result, 'failure');
  assert.equal(o.output.length, 10 * 1024);
});

test('the runtime ending the command at the timeout is a failure naming the command', async () => {
  const { cri } = fakeRuntime(grpcError(4, 'timeout 2s exceeded'));
  assert.deepEqual(await execProber(cri).run({ kind: 'exec', command: ['sh', '-c', 'sleep 10'] }, target), { result: 'failure', output: 'command "sh -c sleep 10" timed out' });
});

test('a runtime error is not a probe failure: it rejects, for the pod worker to discard', async () => {
  const { cri } = fakeRuntime(grpcError(5, 'container "ctr1" not found'));
  const e = await rejection(execProber(cri).run({ kind: 'exec', command: ['true'] }, target));
  assert.ok(isCode(e, 'Unavailable'));
  assert.match((e as Error).message, /exec probe in container ctr1: container "ctr1" not found/);
});

test('an empty command and a network probe are refused, naming the field', async () => {
  const { cri, calls } = fakeRuntime(out('', '', 0));
  const e = await rejection(execProber(cri).run({ kind: 'exec', command: [] }, target));
  assert.ok(isCode(e, 'InvalidArgument'));
  assert.match((e as Error).message, /exec\.command/);
  assert.ok(isCode(await rejection(execProber(cri).run({ kind: 'tcpSocket', port: 80 }, target)), 'InvalidArgument'));
  assert.equal(calls.length, 0);
});
