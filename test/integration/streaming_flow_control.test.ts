import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { closeSync, openSync } from 'node:fs';
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';

import { type AgentProcess, createContainer, sleep, startBusyboxPod, type TestNode } from '../lib/agent.js';

// Flow control end to end (issue 13, deliverable 5): `crictl exec -i` with
// its stdin on /dev/zero — an endless source, as `kubectl exec -i … </dev/zero`
// — for 30 s, over SPDY (crictl's default; spdystream keeps no windows, so
// only TCP's own window stops it) and over WebSocket, into a command that
// never reads its stdin (`sleep`) and one that reads it as fast as it can
// (`cat >/dev/null`). The runtime half's resident memory is sampled the
// whole time: what the client sends and the command has not taken must wait
// in the client and the kernel, not in the runtime.

const floodMs = 30000;
/**
 * Growth over the idle baseline the runtime half may show while flooded: a
 * busy Node.js process's heap and buffers settle at some tens of MiB above its
 * idle size; without flow control it grew by more than 1 GiB in 10 s.
 */
const boundMiB = 128;
/** After the first third of the flood the runtime's size is flat: at most this much above what it reached by then. */
const flatMiB = 48;
/** Beyond this the flood is stopped early (the runtime is clearly unbounded; spare the shared machine). */
const abortMiB = 1024;

async function vmRssKiB(pid: number): Promise<number> {
  const status = await readFile(`/proc/${pid}/status`, 'utf8');
  const m = /^VmRSS:\s+(\d+) kB$/m.exec(status);
  if (!m) throw new Error(`no VmRSS in /proc/${pid}/status`);
  return Number(m[1]);
}

/** Bytes the process has written (to the exec's stdin pipe, mostly, during a flood); undefined if /proc does not say. */
async function wcharOf(pid: number): Promise<number | undefined> {
  const io = await readFile(`/proc/${pid}/io`, 'utf8').catch(() => '');
  const m = /^wchar:\s+(\d+)$/m.exec(io);
  return m ? Number(m[1]) : undefined;
}

const figures: string[] = [];
after(() => {
  if (figures.length > 0) console.log(`runtime half RSS under an exec stdin flood (MiB):\n${figures.join('\n')}`);
});

// One runtime per transport: memory one flood left allocated would hide the next one's growth.
for (const transport of ['spdy', 'websocket'] as const) describe(`streaming flow control (${transport}): exec stdin from /dev/zero keeps the runtime half bounded`, () => {
  let node: TestNode;
  let agent: AgentProcess;
  let runtimePid: number;
  let sleeper: string;

  before(async () => {
    let pod: string;
    let podFile: string;
    let busybox: string;
    ({ node, agent, busybox, pod, podFile } = await startBusyboxPod(() => ({ metadata: { name: 'flood', namespace: 'default', uid: 'flood-uid', attempt: 0 }, linux: {} })));
    sleeper = await createContainer(node, pod, podFile, { metadata: { name: 'sleeper' }, image: { image: busybox }, command: ['sleep', '3600'], linux: {} });
    assert.equal((await node.crictl(['start', sleeper])).code, 0);
    // The runtime half (nsenter execs node in place: its pid is the runtime's).
    runtimePid = Number.parseInt(await readFile(join(node.runtimeDir, 'runtime.pid'), 'utf8'), 10);
    const comm = (await readFile(`/proc/${runtimePid}/comm`, 'utf8')).trim();
    assert.match(comm, /^node/, `runtime.pid names ${comm}, not the runtime half's node`);
    // One exec first, so the baseline includes what any exec loads once.
    assert.equal((await node.crictl(['exec', sleeper, 'true'])).code, 0);
  });

  after(async () => {
    agent?.child.kill('SIGTERM');
    await node?.destroy();
  });

  const cases = [
    { transport, reader: 'never reads', cmd: ['sleep', '3600'] },
    { transport, reader: 'reads fast', cmd: ['sh', '-c', 'cat >/dev/null'] },
  ] as const;

  for (const c of cases) {
    it(`${c.transport}: 30 s of /dev/zero into a command that ${c.reader} grows the runtime half by less than ${boundMiB} MiB, flat after its first ${floodMs / 3000} s`, async () => {
      // The baseline is the highest of a few samples: RSS dips when the collector hands pages back, and a dip is not the runtime's size.
      let baseline = 0;
      for (let i = 0; i < 8; i++) {
        baseline = Math.max(baseline, await vmRssKiB(runtimePid));
        await sleep(250);
      }
      const wrote = await wcharOf(runtimePid);
      const zero = openSync('/dev/zero', 'r');
      const client = spawn(node.crictlPath, ['--runtime-endpoint', `unix://${node.socket}`, 'exec', '-i', '-r', c.transport, sleeper, ...c.cmd], {
        env: node.env,
        stdio: [zero, 'ignore', 'pipe'],
      });
      closeSync(zero);
      let clientErr = '';
      client.stderr!.on('data', (d: Buffer) => (clientErr += d.toString()));
      let clientExited = false;
      client.on('exit', () => (clientExited = true));
      let peak = baseline;
      /** The peak over the first third: the working size the runtime settles at. */
      let warm = 0;
      const started = Date.now();
      let stoppedEarly = '';
      try {
        while (Date.now() - started < floodMs) {
          await sleep(250);
          const rss = await vmRssKiB(runtimePid).catch(() => 0);
          assert.notEqual(rss, 0, `the runtime half (pid ${runtimePid}) is gone after ${Date.now() - started} ms of flood:\n${agent.log.slice(-3000)}`);
          peak = Math.max(peak, rss);
          if (Date.now() - started < floodMs / 3) warm = peak;
          if ((peak - baseline) / 1024 > abortMiB) {
            stoppedEarly = ` (flood stopped after ${((Date.now() - started) / 1000).toFixed(1)} s)`;
            break;
          }
          assert.equal(clientExited, false, `crictl exec ended during the flood: ${clientErr}`);
        }
      } finally {
        client.kill('SIGKILL');
      }
      const growth = (peak - baseline) / 1024;
      const late = (peak - Math.max(warm, baseline)) / 1024;
      const wroteAfter = await wcharOf(runtimePid);
      const moved = wrote !== undefined && wroteAfter !== undefined ? `, ${((wroteAfter - wrote) / 1048576).toFixed(0)} MiB written onward` : '';
      figures.push(`${c.transport}, command ${c.reader}: baseline ${(baseline / 1024).toFixed(1)}, peak ${(peak / 1024).toFixed(1)}, growth ${growth.toFixed(1)} (of which after the first ${floodMs / 3000} s: ${late.toFixed(1)})${moved}${stoppedEarly}`);
      assert.ok(growth < boundMiB, `the runtime half grew by ${growth.toFixed(1)} MiB (baseline ${(baseline / 1024).toFixed(1)} MiB, peak ${(peak / 1024).toFixed(1)} MiB)${stoppedEarly}`);
      assert.ok(late < flatMiB, `the runtime half kept growing: ${late.toFixed(1)} MiB after the first ${floodMs / 3000} s (at ${(warm / 1024).toFixed(1)} MiB then, peak ${(peak / 1024).toFixed(1)} MiB)`);
      // Still serving: the flood is over and an exec answers.
      const r = await node.crictl(['exec', sleeper, 'echo', 'still here']);
      assert.equal(r.stdout, 'still here\n', r.stderr);
    });
  }

  it(`the runtime half served every ${transport} flood without a restart`, () => {
    assert.doesNotMatch(agent.log, /runtime half exited/, agent.log.split('\n').filter((l) => /exited|Error/.test(l)).join('\n'));
  });
});
