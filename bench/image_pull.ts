import { parseArgs } from 'node:util';

import { RegistryPusher } from '../test/images/registry_push.js';
import { environValue, loadAverage, machineBusySeconds, must, ourCpuSeconds, processesOf, sleep, sumOf } from './lib/proc.js';
import { buildRandomImage, type RandomImage } from './lib/random_image.js';
import { machineLines, ratioRow, sectionStart, sectionTail, writeResults } from './lib/report.js';
import type { CriRuntime, Leftovers, TimelinePoint } from './lib/runtime.js';
import { BenchSession, benchOptions, benchUsage, say, type BenchFacts } from './lib/session.js';
import { median, summarize, type Summary } from './lib/stats.js';

// Pull + unpack of a ~100 MB multi-layer image from the test registry:
// usernode against rootless containerd 1.6 (CRI plugin, overlayfs), both run
// by this (unprivileged) user in the same run, pulled by the same crictl,
// alternating run by run (usernode, containerd, usernode, …). Every run starts
// from an empty store: the image is removed (crictl rmi) after each pull and
// both stores are checked to hold no blob and no layer of it before the next.
// Reports medians, min and max of N runs and the ratio usernode/containerd,
// and writes them with the machine's facts into a section of BENCHMARKS.md.
// Never asserts a time.
//
//   node dist/bench/image_pull.js [--runs 5] [--registry 192.168.213.2:5000] [--out BENCHMARKS.md]
//
// bench/run.sh (as root) sets the host up and runs this as the test user.

const usage = `usage: image_pull.js [--runs N] [--warmup N] [--layers N] [--layer-mib N] ${benchUsage}`;

interface RunRecord {
  runtime: string;
  index: number;
  warmup: boolean;
  /** crictl pull, spawn to exit. */
  pullMs: number;
  /** The runtime's own account of PullImage (its log). */
  serverMs: number | undefined;
  /** `sync` right after the pull: what the pull left to write back. */
  syncMs: number;
  rmiMs: number;
  /** How long after crictl rmi returned the store still held blobs or layers. */
  gcLagMs: number;
  timeline: TimelinePoint[];
  /** 1-minute load average as the run began. */
  load: number;
  /** CPU seconds the pull cost: the runtime's processes and crictl. */
  cpuS: number;
  /** Cores' worth of CPU other work on the machine used during the pull. */
  otherCores: number;
  /** cpuS by command name (node, containerd, slirp4netns, …). */
  cpuBy: Record<string, number>;
}

const fmtLeft = (l: Leftovers): string => [...l.blobs, ...l.layers].slice(0, 8).join(', ') + (l.blobs.length + l.layers.length > 8 ? ', …' : '');
const empty = (l: Leftovers): boolean => l.blobs.length === 0 && l.layers.length === 0;

async function main(): Promise<void> {
  const { values } = parseArgs({
    options: {
      runs: { type: 'string', default: '5' },
      warmup: { type: 'string', default: '1' },
      ...benchOptions,
      layers: { type: 'string', default: '5' },
      'layer-mib': { type: 'string', default: '20' },
    },
    strict: true,
  });
  const runs = Number(values.runs);
  const warmups = Number(values.warmup);
  const layerCount = Number(values.layers);
  const layerMiB = Number(values['layer-mib']);
  if (![runs, layerCount, layerMiB].every((n) => Number.isInteger(n) && n > 0) || !Number.isInteger(warmups) || warmups < 0) throw new Error(usage);
  const registry = values.registry!;
  const session = await BenchSession.fromArgs(values);

  // --- the image --------------------------------------------------------------------
  const seed = 'usernode-bench-v1';
  const t0 = Date.now();
  const img: RandomImage = await buildRandomImage({ seed, layers: layerCount, layerBytes: layerMiB * 2 ** 20 });
  const repository = 'usernode-bench/random';
  const tag = `${layerCount}x${layerMiB}MiB`;
  const ref = `${registry}/${repository}:${tag}`;
  const pusher = new RegistryPusher({ host: registry });
  const pushed = await pusher.push(repository, [tag], img.built);
  if (pushed !== img.built.manifest.digest) throw new Error(`the registry reports ${pushed} for ${ref}, not ${img.built.manifest.digest}`);
  say(
    `image ${ref}: ${img.built.layers.length} gzip layers, ${(img.compressedBytes / 1e6).toFixed(1)} MB compressed, ${(img.uncompressedBytes / 1e6).toFixed(1)} MB of tar, ` +
      `${img.files} files; built and pushed in ${Date.now() - t0} ms (blobs uploaded ${pusher.stats.uploaded}, already there ${pusher.stats.skipped})`,
  );

  // --- the runtimes -----------------------------------------------------------------------
  const { usernode, containerd, runtimes, odd } = session;

  const records: RunRecord[] = [];
  // Other work on the machine skews the times: the load, and (when bench/run.sh marked this
  // run's processes) processes of this user the benchmark did not start, e.g. a test run.
  const marker = process.env.USERNODE_BENCH_RUN;
  const foreign = new Map<number, string>();
  const lookAround = async (): Promise<number> => {
    if (marker) {
      for (const p of await processesOf(process.getuid!())) {
        if (!foreign.has(p.pid) && (await environValue(p.pid, 'USERNODE_BENCH_RUN')) !== marker && p.cmdline) foreign.set(p.pid, p.cmdline.slice(0, 120));
      }
    }
    return loadAverage();
  };
  const isOurs = async (pid: number): Promise<boolean> => !marker || (await environValue(pid, 'USERNODE_BENCH_RUN')) === marker;
  const cpuNow = async (): Promise<{ t: number; busy: number; ours: Map<string, number> }> => {
    const [busy, ours] = await Promise.all([machineBusySeconds(), ourCpuSeconds(isOurs)]);
    return { t: Number(process.hrtime.bigint()) / 1e9, busy, ours };
  };
  const snapshotters: Record<string, string> = {};
  let facts: BenchFacts | undefined;
  try {
    await session.start();
    snapshotters.usernode = await usernode.snapshotter();
    snapshotters.containerd = await containerd.snapshotter();
    say(`both runtimes serve CRI (usernode snapshotter: ${snapshotters.usernode}; containerd: ${snapshotters.containerd})`);
    if (!snapshotters.usernode.startsWith('overlayfs')) odd.push(`usernode is not using overlayfs here (${snapshotters.usernode}): its unpack copies`);

    for (const rt of runtimes) {
      const l = await rt.leftovers();
      if (!empty(l)) throw new Error(`${rt.name} starts with a store that is not empty: ${fmtLeft(l)}`);
    }

    const once = async (rt: CriRuntime, index: number, warmup: boolean): Promise<RunRecord> => {
      const before = await rt.crictlRun(['inspecti', ref]);
      if (before.code === 0) throw new Error(`${rt.name} has ${ref} before the pull`);
      // Nothing of the previous run left to write back.
      await must('sync', []);
      await sleep(300);
      const load = await lookAround();
      const offset = rt.log.length;
      const cpu0 = await cpuNow();
      const pull = await rt.crictlRun(['pull', ref]);
      const cpu1 = await cpuNow();
      const cpuS = sumOf(cpu1.ours) - sumOf(cpu0.ours);
      const cpuBy: Record<string, number> = {};
      for (const [k, v] of cpu1.ours) if (v - (cpu0.ours.get(k) ?? 0) >= 0.01) cpuBy[k] = v - (cpu0.ours.get(k) ?? 0);
      const otherCores = Math.max(0, (cpu1.busy - cpu0.busy - cpuS) / (cpu1.t - cpu0.t));
      if (pull.code !== 0) throw new Error(`${rt.name}: crictl pull ${ref} failed:\n${pull.stdout}${pull.stderr}\n--- log ---\n${rt.log.slice(offset)}`);
      const sync = await must('sync', []);
      await rt.crictlMust(['inspecti', ref]);
      await sleep(200); // the runtime's last log lines
      const account = rt.account(ref, offset);
      const rmi = await rt.crictlMust(['rmi', ref]);
      const rmiDone = Date.now();
      let left = await rt.leftovers();
      while (!empty(left) && Date.now() - rmiDone < 15000) {
        await sleep(100);
        left = await rt.leftovers();
      }
      if (!empty(left)) throw new Error(`${rt.name}: 15 s after crictl rmi its store still holds ${fmtLeft(left)}: the next run would measure a cache`);
      const gcLagMs = Date.now() - rmiDone < 100 ? 0 : Date.now() - rmiDone;
      if (gcLagMs > 0) odd.push(`${rt.name}: run ${index}${warmup ? ' (warm-up)' : ''}: blobs or layers stayed ${gcLagMs} ms after crictl rmi returned`);
      const r: RunRecord = { runtime: rt.name, index, warmup, pullMs: pull.ms, serverMs: account.serverMs, syncMs: sync.ms, rmiMs: rmi.ms, gcLagMs, timeline: account.timeline, load, cpuS, otherCores, cpuBy };
      say(
        `${warmup ? 'warm-up' : `run ${index}`} ${rt.name.padEnd(10)} pull ${pull.ms.toFixed(0).padStart(6)} ms` +
          `  (runtime's own: ${account.serverMs === undefined ? '?' : account.serverMs.toFixed(0)} ms; sync after: ${sync.ms.toFixed(0)} ms; rmi ${rmi.ms.toFixed(0)} ms;` +
          ` CPU ${cpuS.toFixed(2)} s; other work ${otherCores.toFixed(2)} cores)`,
      );
      return r;
    };

    for (let w = 0; w < warmups; w++) for (const rt of runtimes) records.push(await once(rt, w + 1, true));
    for (let i = 1; i <= runs; i++) for (const rt of runtimes) records.push(await once(rt, i, false));

    facts = await session.facts(values.source!, { 'docker-registry': ['docker-registry', ['--version']] });
  } finally {
    await session.stop();
  }

  // --- the report -----------------------------------------------------------------------------
  const measured = records.filter((r) => !r.warmup);
  const of = (name: string, f: (r: RunRecord) => number | undefined): number[] =>
    measured.filter((r) => r.runtime === name).map(f).filter((x): x is number => x !== undefined && Number.isFinite(x));
  const table: Record<string, { pull: Summary; server: Summary; sync: Summary; pullSync: Summary; cpu: Summary; other: Summary }> = {};
  for (const rt of runtimes) {
    table[rt.name] = {
      pull: summarize(of(rt.name, (r) => r.pullMs)),
      server: summarize(of(rt.name, (r) => r.serverMs)),
      sync: summarize(of(rt.name, (r) => r.syncMs)),
      pullSync: summarize(of(rt.name, (r) => r.pullMs + r.syncMs)),
      cpu: summarize(of(rt.name, (r) => r.cpuS * 1000)),
      other: summarize(of(rt.name, (r) => r.otherCores)),
    };
  }
  const u = table.usernode!;
  const c = table.containerd!;
  const pairs = measured.filter((r) => r.runtime === 'usernode').map((r) => {
    const other = measured.find((o) => o.runtime === 'containerd' && o.index === r.index);
    return other ? r.pullMs / other.pullMs : NaN;
  });
  const ratio = u.pull.median / c.pull.median;
  const pairedRatio = median(pairs.filter(Number.isFinite));
  const ms = (x: number): string => (Number.isFinite(x) ? x.toFixed(0) : '–');
  const mbps = (x: number): string => (Number.isFinite(x) ? ((img.compressedBytes / 1e6) / (x / 1000)).toFixed(0) : '–');
  const row = ratioRow;

  const console_ = [
    '',
    `image pull + unpack, ${ref} (${(img.compressedBytes / 1e6).toFixed(1)} MB, ${img.built.layers.length} layers), medians of ${runs} runs each:`,
    `  crictl pull    usernode ${ms(u.pull.median)} ms (${ms(u.pull.min)}–${ms(u.pull.max)})   containerd ${ms(c.pull.median)} ms (${ms(c.pull.min)}–${ms(c.pull.max)})`,
    `  runtime's own  usernode ${ms(u.server.median)} ms                 containerd ${ms(c.server.median)} ms`,
    `  pull + sync    usernode ${ms(u.pullSync.median)} ms                 containerd ${ms(c.pullSync.median)} ms`,
    `  CPU of a pull  usernode ${ms(u.cpu.median)} ms                 containerd ${ms(c.cpu.median)} ms`,
    `  ratio usernode/containerd (crictl pull medians): ${ratio.toFixed(2)}   (median of the per-pair ratios: ${pairedRatio.toFixed(2)})`,
    ...(odd.length ? ['  odd:', ...odd.map((o) => `    - ${o}`)] : []),
    '',
  ].join('\n');
  process.stdout.write(console_);

  const loads = records.map((r) => r.load);
  if (foreign.size > 0) {
    odd.push(
      `other processes of this user ran during the benchmark (${foreign.size}; the times are noisier for it): ` +
        [...new Set(foreign.values())].slice(0, 5).map((c) => `\`${c}\``).join(', ') + (foreign.size > 5 ? ', …' : ''),
    );
  }
  const medianRun = (name: string, s: Summary): RunRecord | undefined =>
    measured.filter((r) => r.runtime === name).sort((a, b) => Math.abs(a.pullMs - s.median) - Math.abs(b.pullMs - s.median))[0];
  const timelineOf = (name: string, s: Summary): string[] => {
    const r = medianRun(name, s);
    if (!r || r.timeline.length === 0) return [`- ${name}: (no timeline in its log)`];
    const by = Object.entries(r.cpuBy)
      .sort((a, b) => b[1] - a[1])
      .map(([k, v]) => `${k} ${ms(v * 1000)}`)
      .join(', ');
    return [`- ${name}, run ${r.index} (crictl pull ${ms(r.pullMs)} ms; CPU ms by process: ${by}):`, ...r.timeline.map((p) => `  - ${p.at.toFixed(3)} s ${p.what}`)];
  };
  const md = [
    sectionStart('image_pull', 'bench/image_pull.js'),
    '## Image pull + unpack',
    '',
    `Pull of \`${repository}:${tag}\` from the test registry (docker-registry in the test host's network namespace, reached through each runtime's slirp4netns), ` +
      `through \`crictl pull\`, every run from an empty store (\`crictl rmi\` after each pull, then both stores checked to hold no blob and no layer). ` +
      `usernode and containerd alternate run by run, ${warmups} warm-up pull each first (not counted), then ${runs} measured runs each.`,
    '',
    `- Image: OCI, ${img.built.layers.length} gzip layers of pseudo-random bytes (seed \`${seed}\`), ${(img.compressedBytes / 1e6).toFixed(1)} MB compressed ` +
      `(${(img.uncompressedBytes / 1e6).toFixed(1)} MB of tar), ${img.files} files (per layer one ${(layerMiB * 0.4).toFixed(0)} MiB file, eight of ${(layerMiB * 0.05).toFixed(1)} MiB, the rest 16 KiB files).`,
    `- usernode: \`bin/usernode run\` as the unprivileged user, snapshotter ${snapshotters.usernode}.`,
    `- containerd: rootless under rootlesskit (slirp4netns, MTU 65520, host loopback off, /etc and /run copied up — as usernode's node namespace — and /var/lib, as containerd-rootless.sh does), CRI plugin, snapshotter ${snapshotters.containerd}, registry plain HTTP by hosts.toml.`,
    `- Measured on ${new Date().toISOString().slice(0, 10)}${values.source ? `, source ${values.source}` : ''}.`,
    '',
    '| time (ms) | usernode median | usernode min–max | containerd median | containerd min–max | usernode/containerd |',
    '|---|---:|---:|---:|---:|---:|',
    row('`crictl pull` (spawn to exit)', u.pull, c.pull),
    row("PullImage by the runtime's own log", u.server, c.server),
    row('`sync` right after the pull', u.sync, c.sync),
    row('pull + sync', u.pullSync, c.pullSync),
    row('CPU time of the pull (runtime processes + crictl)', u.cpu, c.cpu),
    '',
    `**Ratio usernode/containerd (medians of \`crictl pull\`): ${ratio.toFixed(2)}** (median of the ${pairs.length} per-pair ratios: ${pairedRatio.toFixed(2)}). ` +
      `Throughput on the compressed bytes: usernode ${mbps(u.pull.median)} MB/s, containerd ${mbps(c.pull.median)} MB/s.`,
    '',
    "Each run, in order: crictl pull ms / runtime's own ms / sync after ms / CPU ms of the pull; and the CPU other work on the machine used meanwhile, in cores:",
    '',
    '| run | usernode | other work | containerd | other work |',
    '|---|---|---:|---|---:|',
    ...Array.from({ length: warmups + runs }, (_, k) => {
      const warm = k < warmups;
      const idx = warm ? k + 1 : k - warmups + 1;
      const cell = (name: string): string => {
        const r = records.find((x) => x.runtime === name && x.warmup === warm && x.index === idx);
        return r ? `${ms(r.pullMs)} / ${r.serverMs === undefined ? '–' : ms(r.serverMs)} / ${ms(r.syncMs)} / ${ms(r.cpuS * 1000)} | ${r.otherCores.toFixed(2)}` : '– | –';
      };
      return `| ${warm ? `warm-up ${idx}` : idx} | ${cell('usernode')} | ${cell('containerd')} |`;
    }),
    '',
    "Where the time goes in the run nearest each median (from each runtime's log, seconds since PullImage began):",
    '',
    ...timelineOf('usernode', u.pull),
    ...timelineOf('containerd', c.pull),
    '',
    ...machineLines(facts, [
      `- 1-minute load average as the runs began: ${Math.min(...loads).toFixed(2)}–${Math.max(...loads).toFixed(2)}; other work during the measured pulls: median ${median(measured.map((r) => r.otherCores)).toFixed(2)} cores, at most ${Math.max(...measured.map((r) => r.otherCores)).toFixed(2)}`,
    ]),
    ...sectionTail('image_pull', odd, ' (`--runs N` for more runs)'),
  ].join('\n');
  const image = { compressedBytes: img.compressedBytes, uncompressedBytes: img.uncompressedBytes, files: img.files, layers: img.built.layers.length, manifest: img.built.manifest.digest };
  await writeResults(values, 'image_pull', md, { ref, image, facts, table, ratio, pairedRatio, records, odd });
}

main().catch((e: unknown) => {
  console.error(`bench: ${e instanceof Error ? (e.stack ?? e.message) : String(e)}`);
  process.exit(1);
});
