import { parseArgs } from 'node:util';

import { memoryOf, summarizeMemory, type MemorySummary } from './lib/memory.js';
import { pushPodImages } from './lib/pod_images.js';
import { PodClient, podClients, type PodStart } from './lib/pods.js';
import { loadAverage, sleep } from './lib/proc.js';
import { fmt, machineLines, ratioRow, sectionStart, sectionTail, writeResults } from './lib/report.js';
import { parseLogLine } from './lib/runtime.js';
import { BenchSession, benchOptions, benchUsage, say, type BenchFacts } from './lib/session.js';
import { median, percentile, summarize } from './lib/stats.js';

// Pod start, side by side: usernode against rootless containerd 1.6 (CRI
// plugin, CNI bridge, runc), both driven by the project's own CRI client with
// the same requests — RunPodSandbox + CreateContainer + StartContainer of a
// busybox `sleep` from the test registry, image pulled beforehand.
//   1. N pods one after the other (p50/p99), alternating in blocks of a few
//      pods between the runtimes; the pods stay up;
//   2. the memory of every runtime process idle and with those N pods running;
//   3. P pods started at once: the time until all are running (R rounds).
// Never asserts a time.
//
//   node dist/bench/pods.js [--serial 50] [--parallel 30] [--rounds 5] [--registry HOST:PORT] [--out BENCHMARKS.md]

const usage = `usage: pods.js [--serial N] [--parallel N] [--rounds N] [--warmup N] [--block N] ${benchUsage}`;

interface ParallelRound {
  runtime: string;
  round: number;
  /** First RunPodSandbox sent to the last StartContainer answered. */
  wallMs: number;
  /** Containers the runtime listed RUNNING right after. */
  running: number;
  perPodMs: number[];
  /** Removing them all, 8 at a time. */
  removeMs: number;
  load: number;
}

interface Snapshot {
  idle: MemorySummary;
  loaded: MemorySummary;
}

/** usernode's own account of each CRI call (its `cri done` debug lines): ms by RPC. */
function serverTimes(log: string): Record<string, number[]> {
  const out: Record<string, number[]> = {};
  for (const line of log.split('\n')) {
    const l = parseLogLine(line);
    if (l?.msg !== 'cri done' || !l.fields.rpc || !l.fields.ms) continue;
    (out[l.fields.rpc] ??= []).push(Number(l.fields.ms));
  }
  return out;
}

async function main(): Promise<void> {
  const { values } = parseArgs({
    options: {
      serial: { type: 'string', default: '50' },
      parallel: { type: 'string', default: '30' },
      rounds: { type: 'string', default: '5' },
      warmup: { type: 'string', default: '2' },
      block: { type: 'string', default: '5' },
      ...benchOptions,
    },
    strict: true,
  });
  const [serialN, parallelN, rounds, warmups, block] = [values.serial, values.parallel, values.rounds, values.warmup, values.block].map(Number) as [number, number, number, number, number];
  if (![serialN, parallelN, rounds, block].every((n) => Number.isInteger(n) && n > 0) || !Number.isInteger(warmups) || warmups < 0) throw new Error(usage);
  const registry = values.registry!;

  const t0 = Date.now();
  const images = await pushPodImages(registry);
  say(`images ${images.busybox} and ${images.pause} in the registry (${Date.now() - t0} ms; blobs uploaded ${images.uploaded}, already there ${images.skipped})`);

  const session = await BenchSession.fromArgs(values, images.pause);
  const { odd } = session;
  const clients = podClients(session, images.busybox);
  const client = (name: string): PodClient => clients.get(name)!;
  /** Both runtimes in turn, the first one alternating with `k`. */
  const inTurn = (k: number): PodClient[] => (k % 2 === 0 ? [...clients.values()] : [...clients.values()].reverse());

  const serial: Record<string, PodStart[]> = {};
  const removal: Record<string, number[]> = {};
  const parallel: ParallelRound[] = [];
  const memory: Record<string, Partial<Snapshot>> = {};
  const loads: number[] = [];
  let server: Record<string, number[]> = {};
  let facts: BenchFacts | undefined;
  try {
    await session.start();
    for (const c of clients.values()) {
      await c.pull(images.busybox);
      serial[c.runtime.name] = [];
      removal[c.runtime.name] = [];
      memory[c.runtime.name] = {};
    }
    // kubelet pulls the sandbox image before the first pod; containerd would otherwise pull it inside RunPodSandbox.
    await client('containerd').pull(images.pause);
    say(`both runtimes serve CRI; ${images.busybox} pulled by both`);

    // Warm-up: the first pod of a runtime makes the bridge, the NAT chains, the caches.
    for (let w = 0; w < warmups; w++) {
      for (const c of inTurn(w)) {
        const s = await c.start(await c.config('warmup'));
        await c.remove(s.id);
        say(`warm-up ${c.runtime.name.padEnd(10)} ${fmt(s.totalMs)} ms`);
      }
    }
    await sleep(3000);
    for (const c of clients.values()) memory[c.runtime.name]!.idle = summarizeMemory(await memoryOf(c.runtime));

    // 1. serial
    const usernodeLogAt = session.usernode.log.length;
    for (let b = 0; b * block < serialN; b++) {
      loads.push(await loadAverage());
      for (const c of inTurn(b)) {
        for (let k = 0; k < block && b * block + k < serialN; k++) serial[c.runtime.name]!.push(await c.start(await c.config('serial')));
      }
      say(`serial: ${Math.min(serialN, (b + 1) * block)}/${serialN} pods each; last: ${[...clients.keys()].map((n) => `${n} ${fmt(serial[n]!.at(-1)!.totalMs)} ms`).join(', ')}`);
    }
    server = serverTimes(session.usernode.log.slice(usernodeLogAt));

    // 2. memory with the pods running
    await sleep(3000);
    for (const c of clients.values()) {
      const running = await c.runningContainers();
      if (running !== serialN) odd.push(`${c.runtime.name}: ${running} containers RUNNING with ${serialN} pods started`);
      memory[c.runtime.name]!.loaded = summarizeMemory(await memoryOf(c.runtime));
    }
    for (const c of clients.values()) {
      for (const id of [...c.live]) removal[c.runtime.name]!.push(await c.remove(id));
      say(`removed ${serialN} pods of ${c.runtime.name}: median ${fmt(median(removal[c.runtime.name]!))} ms each`);
    }

    // 3. parallel
    for (let r = 1; r <= rounds; r++) {
      for (const c of inTurn(r)) {
        const configs = await Promise.all(Array.from({ length: parallelN }, () => c.config('parallel')));
        await sleep(1000);
        const load = await loadAverage();
        loads.push(load);
        const start = process.hrtime.bigint();
        const starts = await Promise.all(configs.map((cfg) => c.start(cfg)));
        const wallMs = Number(process.hrtime.bigint() - start) / 1e6;
        const running = await c.runningContainers();
        if (running !== parallelN) odd.push(`${c.runtime.name}: round ${r}: ${running} containers RUNNING after ${parallelN} parallel starts returned`);
        const removeMs = await c.removeAll(8);
        parallel.push({ runtime: c.runtime.name, round: r, wallMs, running, perPodMs: starts.map((s) => s.totalMs), removeMs, load });
        say(`parallel round ${r} ${c.runtime.name.padEnd(10)} ${parallelN} pods running after ${fmt(wallMs)} ms (removed in ${fmt(removeMs)} ms)`);
      }
    }
    facts = await session.facts(values.source!);
  } finally {
    await session.stop();
  }

  // --- the report -----------------------------------------------------------------------------
  const names = ['usernode', 'containerd'] as const;
  const tot = (n: string): number[] => serial[n]!.map((s) => s.totalMs);
  const phase = (n: string, f: (s: PodStart) => number): number[] => serial[n]!.map(f);
  const par = (n: string): ParallelRound[] => parallel.filter((p) => p.runtime === n);
  const u = 'usernode';
  const c = 'containerd';
  const pct = (n: string, p: number): number => percentile(tot(n), p);
  const ratio = (a: number, b: number): string => fmt(a / b, 2);
  const memRow = (what: string, f: (m: MemorySummary) => number, when: keyof Snapshot): string => {
    const a = memory[u]?.[when];
    const b = memory[c]?.[when];
    const x = a ? f(a) : NaN;
    const y = b ? f(b) : NaN;
    return `| ${what} | ${fmt(x, 1)} | ${fmt(y, 1)} | ${ratio(x, y)} |`;
  };
  const count = (n: string, when: keyof Snapshot): string => {
    const m = memory[n]?.[when];
    return m ? `${m.count.runtime} runtime, ${m.count.monitor} monitor, ${m.count.namespace} node-namespace, ${m.count.pod} pod processes` : '?';
  };
  const parWall = (n: string): number[] => par(n).map((p) => p.wallMs);
  const serverRow = (rpc: string): string => {
    const xs = server[rpc] ?? [];
    return `${rpc} ${fmt(median(xs), 1)} ms (p99 ${fmt(percentile(xs, 99), 1)})`;
  };

  const console_ = [
    '',
    `pod start (RunPodSandbox + CreateContainer + StartContainer, busybox sleep), ${serialN} serial pods each:`,
    ...names.map((n) => `  ${n.padEnd(10)} p50 ${fmt(pct(n, 50))} ms  p99 ${fmt(pct(n, 99))} ms  (run ${fmt(median(phase(n, (s) => s.runMs)))} / create ${fmt(median(phase(n, (s) => s.createMs)))} / start ${fmt(median(phase(n, (s) => s.startMs)))} ms)`),
    `  ratio usernode/containerd p50 ${ratio(pct(u, 50), pct(c, 50))}, p99 ${ratio(pct(u, 99), pct(c, 99))}`,
    `${parallelN} pods in parallel, until all are running (median of ${rounds} rounds): usernode ${fmt(median(parWall(u)))} ms, containerd ${fmt(median(parWall(c)))} ms, ratio ${ratio(median(parWall(u)), median(parWall(c)))}`,
    `agent memory (runtime + monitors, RSS MiB): idle usernode ${fmt(memory[u]?.idle?.rss.agent ?? NaN, 1)} containerd ${fmt(memory[c]?.idle?.rss.agent ?? NaN, 1)}; with ${serialN} pods usernode ${fmt(memory[u]?.loaded?.rss.agent ?? NaN, 1)} containerd ${fmt(memory[c]?.loaded?.rss.agent ?? NaN, 1)}`,
    ...(odd.length ? ['  odd:', ...odd.map((o) => `    - ${o}`)] : []),
    '',
  ].join('\n');
  process.stdout.write(console_);

  const md = [
    sectionStart('pods', 'bench/pods.js'),
    '## Pod start',
    '',
    `One pod = RunPodSandbox + CreateContainer + StartContainer of one container (\`sleep\`, image \`${images.busybox}\`, pulled beforehand; containerd's sandbox image \`${images.pause}\` too), ` +
      "sent by the project's own CRI client (`proto/client.ts`, gRPC on the runtime's socket) with the same requests to both runtimes and timed as the client sees it, from the first request sent to the last answer. " +
      `${warmups} warm-up pod(s) each first (not counted). ` +
      `Serial: ${serialN} pods per runtime one after the other, the runtimes alternating every ${block} pods, all left running (the memory is measured with them), then removed one by one. ` +
      `Parallel: ${parallelN} pods started at once on one runtime, until every StartContainer has answered (the containers then listed RUNNING), removed, the other runtime, ${rounds} rounds alternating.`,
    '',
    '- usernode: `bin/usernode run` as the unprivileged user: bind-mounted pod namespaces (no pause process), CNI bridge + host-local + portmap + loopback, runc under conmon.',
    "- containerd: rootless under rootlesskit (same flags as usernode's node namespace), CRI plugin, the same CNI conflist and plugins (bridge `cni0` 10.88.0.0/16, MTU 65520, portmap; loopback by containerd), runc under containerd-shim-runc-v2, a pause container per pod (the test bed's pause stand-in: busybox sh sleeping).",
    `- Measured on ${new Date().toISOString().slice(0, 10)}${values.source ? `, source ${values.source}` : ''}.`,
    '',
    `### ${serialN} pods, one after the other`,
    '',
    '| pod start (ms) | usernode | containerd | usernode/containerd |',
    '|---|---:|---:|---:|',
    ...(
      [
        ['p50', 50],
        ['p99', 99],
      ] as const
    ).map(([k, p]) => `| **${k}**${p === 99 && serialN < 100 ? ` (of ${serialN}: the slowest)` : ''} | ${fmt(pct(u, p))} | ${fmt(pct(c, p))} | ${ratio(pct(u, p), pct(c, p))} |`),
    `| min–max | ${fmt(Math.min(...tot(u)))}–${fmt(Math.max(...tot(u)))} | ${fmt(Math.min(...tot(c)))}–${fmt(Math.max(...tot(c)))} | |`,
    ...(
      [
        ['RunPodSandbox, p50', (s: PodStart) => s.runMs],
        ['CreateContainer, p50', (s: PodStart) => s.createMs],
        ['StartContainer, p50', (s: PodStart) => s.startMs],
      ] as const
    ).map(([k, f]) => `| ${k} | ${fmt(median(phase(u, f)))} | ${fmt(median(phase(c, f)))} | ${ratio(median(phase(u, f)), median(phase(c, f)))} |`),
    `| StopPodSandbox + RemovePodSandbox, p50 | ${fmt(median(removal[u] ?? []))} | ${fmt(median(removal[c] ?? []))} | ${ratio(median(removal[u] ?? []), median(removal[c] ?? []))} |`,
    '',
    `usernode's own account of the same calls (its \`cri done\` log lines, median): ${['RunPodSandbox', 'CreateContainer', 'StartContainer'].map(serverRow).join('; ')}.`,
    '',
    `### ${parallelN} pods at once`,
    '',
    '| ms | usernode median | usernode min–max | containerd median | containerd min–max | usernode/containerd |',
    '|---|---:|---:|---:|---:|---:|',
    ratioRow(`**all ${parallelN} running** (${rounds} rounds)`, summarize(parWall(u)), summarize(parWall(c))),
    ratioRow('one pod within a round (p50 of the round)', summarize(par(u).map((p) => median(p.perPodMs))), summarize(par(c).map((p) => median(p.perPodMs)))),
    ratioRow(`removing all ${parallelN}, 8 at a time`, summarize(par(u).map((p) => p.removeMs)), summarize(par(c).map((p) => p.removeMs))),
    '',
    `Against DESIGN.md's targets (usernode at half of containerd's pod start, serially and in parallel; agent memory with 100 pods ≤ 150 MB): ` +
      `serial p50 usernode/containerd **${ratio(pct(u, 50), pct(c, 50))}** (target ≤ 0.5), all ${parallelN} at once **${ratio(median(parWall(u)), median(parWall(c)))}** (target ≤ 0.5); ` +
      `usernode's agent with ${serialN} pods: RSS **${fmt(memory[u]?.loaded?.rss.agent ?? NaN, 0)} MiB**, PSS ${fmt(memory[u]?.loaded?.pss.agent ?? NaN, 0)} MiB (below).`,
    '',
    '### Memory',
    '',
    `Every process of each runtime (the process tree the benchmark started and everything in the runtime's user namespace), by role, in MiB; idle = after the warm-up pods were removed, 3 s later; loaded = with the ${serialN} serial pods running, 3 s after the last started. ` +
      '**Agent** is what the runtime costs: usernode\'s node processes + the conmons; containerd + its shims. RSS counts shared pages once per process, PSS shares them out.',
    '',
    '| MiB | usernode | containerd | usernode/containerd |',
    '|---|---:|---:|---:|',
    memRow('**agent RSS, idle**', (m) => m.rss.agent, 'idle'),
    memRow('agent PSS, idle', (m) => m.pss.agent, 'idle'),
    memRow(`**agent RSS, ${serialN} pods**`, (m) => m.rss.agent, 'loaded'),
    memRow(`agent PSS, ${serialN} pods`, (m) => m.pss.agent, 'loaded'),
    memRow(`  runtime RSS, ${serialN} pods`, (m) => m.rss.runtime, 'loaded'),
    memRow(`  monitors RSS (conmon / shims), ${serialN} pods`, (m) => m.rss.monitor, 'loaded'),
    memRow(`node namespace RSS (rootlesskit, slirp4netns${', holder'}), ${serialN} pods`, (m) => m.rss.namespace, 'loaded'),
    memRow(`pods' own processes RSS (sleep; containerd: + pause), ${serialN} pods`, (m) => m.rss.pod, 'loaded'),
    '',
    ...names.flatMap((n) => [
      `- ${n}, idle: ${count(n, 'idle')}; with ${serialN} pods: ${count(n, 'loaded')}: ${memory[n]?.loaded?.byComm.join(', ') ?? '?'}`,
    ]),
    '',
    ...machineLines(facts, [`- 1-minute load average as the blocks and rounds began: ${fmt(Math.min(...loads), 2)}–${fmt(Math.max(...loads), 2)}`]),
    ...sectionTail('pods', odd),
  ].join('\n');
  await writeResults(values, 'pods', md, { images, facts, serial, removal, parallel, memory, server, odd });
}

main().catch((e: unknown) => {
  console.error(`bench: ${e instanceof Error ? (e.stack ?? e.message) : String(e)}`);
  process.exit(1);
});
