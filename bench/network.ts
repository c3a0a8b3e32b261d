import { parseArgs } from 'node:util';

import { RootlesskitPorts } from '../pkg/netns/rootlesskit/ports.js';
import { freePort, iperf, type IperfResult, type IperfServer } from './lib/iperf.js';
import { pushPodImages } from './lib/pod_images.js';
import { podClients, type PodClient } from './lib/pods.js';
import { loadAverage } from './lib/proc.js';
import { fmt, machineLines, ratioRow, sectionStart, sectionTail, writeResults } from './lib/report.js';
import type { CriRuntime } from './lib/runtime.js';
import { BenchSession, benchOptions, benchUsage, say, type BenchFacts } from './lib/session.js';
import { median, summarize } from './lib/stats.js';

// The pod network, side by side: iperf3 (one TCP stream, client sending) on
// usernode's and rootless containerd's pods, each run inside the namespace it
// measures by the same nsenter from the benchmark (into the runtime's node
// namespace, then into the pod's network namespace from its verbose status):
//   pod ↔ pod over the bridge, pod → host through slirp4netns (an iperf3
//   server on the host at an address the node namespace reaches, not
//   127.0.0.1), host → pod through a hostPort (client on the host at
//   127.0.0.1:HOSTPORT);
// and in the same run the raw paths they are held to (DESIGN.md, performance
// targets): loopback in the node namespace, node namespace → host through
// slirp4netns, host → node namespace through rootlesskit's builtin port driver.
// containerd's CRI does not forward host ports from rootlesskit: the benchmark
// does it as usernode does (rootlesskit's port API, host port → pod address).
// Alternates the runtimes test by test, R rounds. Never asserts a speed.
//
//   node dist/bench/network.js [--rounds 5] [--seconds 3] [--host-address 192.168.213.1] [--out BENCHMARKS.md]

const usage = `usage: network.js [--rounds N] [--seconds N] [--host-address IP] ${benchUsage}`;

// Each pod path right after the raw path it is held to, so the pair sees the same moment of a noisy machine.
const tests = ['loopback', 'podToPod', 'slirp', 'egress', 'portDriver', 'hostPort'] as const;
type Test = (typeof tests)[number];
const describe: Record<Test, string> = {
  loopback: 'raw: loopback in the node namespace',
  slirp: 'raw: node namespace → host, slirp4netns',
  portDriver: 'raw: host → node namespace, rootlesskit port driver',
  podToPod: '**pod → pod** over the bridge',
  egress: '**pod → host** (egress: bridge, NAT, slirp4netns)',
  hostPort: '**host → pod** through a hostPort',
};
/** DESIGN.md's targets: pod path / raw path ≥ the factor. */
const targets: { test: Test; raw: Test; factor: number }[] = [
  { test: 'podToPod', raw: 'loopback', factor: 0.7 },
  { test: 'egress', raw: 'slirp', factor: 0.9 },
  { test: 'hostPort', raw: 'portDriver', factor: 0.8 },
];

/** The iperf3 server's port inside a node or pod namespace (each namespace has its own ports). */
const innerPort = 5201;

interface Setup {
  /** argv prefixes: into the node namespace; into each pod's network namespace. */
  node: string[];
  server: { prefix: string[]; ip: string };
  client: string[];
  hostPort: number;
  rawPort: number;
}

async function main(): Promise<void> {
  const { values } = parseArgs({
    options: {
      rounds: { type: 'string', default: '5' },
      seconds: { type: 'string', default: '3' },
      'host-address': { type: 'string', default: process.env.USERNODE_BENCH_HOST_ADDRESS || '192.168.213.1' },
      ...benchOptions,
    },
    strict: true,
  });
  const rounds = Number(values.rounds);
  const seconds = Number(values.seconds);
  if (![rounds, seconds].every((n) => Number.isInteger(n) && n > 0)) throw new Error(usage);
  const hostAddress = values['host-address']!;
  const registry = values.registry!;

  const images = await pushPodImages(registry);
  const session = await BenchSession.fromArgs(values, images.pause);
  const { odd } = session;
  const forwards: { ports: RootlesskitPorts; id: number }[] = [];
  session.onStop(async () => {
    for (const f of forwards) await f.ports.remove(f.id).catch((e: unknown) => odd.push(`removing port forward ${f.id}: ${(e as Error).message}`));
  });
  const clients = podClients(session, images.busybox);

  const results: { runtime: string; test: Test; round: number; result: IperfResult; load: number }[] = [];
  let facts: BenchFacts | undefined;
  try {
    await session.start();
    const setups = new Map<string, Setup>();
    for (const c of clients.values()) {
      await c.pull(images.busybox);
      if (c.runtime.name === 'containerd') await c.pull(images.pause);
      setups.set(c.runtime.name, await setUp(c, forwards));
    }
    say(`both runtimes have a server pod and a client pod; iperf3 for ${seconds} s (+1 s not counted) per measurement, ${rounds} rounds`);

    const hostServer = async (): Promise<IperfServer> => ({ prefix: [], host: hostAddress, bind: hostAddress, port: await freePort(hostAddress) });
    const plan = async (s: Setup, test: Test): Promise<{ from: string[]; to: IperfServer }> => {
      switch (test) {
        case 'loopback':
          return { from: s.node, to: { prefix: s.node, host: '127.0.0.1', port: innerPort } };
        case 'slirp':
          return { from: s.node, to: await hostServer() };
        case 'portDriver':
          return { from: [], to: { prefix: s.node, host: '127.0.0.1', port: s.rawPort, listenPort: innerPort } };
        case 'podToPod':
          return { from: s.client, to: { prefix: s.server.prefix, host: s.server.ip, port: innerPort } };
        case 'egress':
          return { from: s.client, to: await hostServer() };
        case 'hostPort':
          return { from: [], to: { prefix: s.server.prefix, host: '127.0.0.1', port: s.hostPort, listenPort: innerPort } };
      }
    };
    for (let r = 1; r <= rounds; r++) {
      for (const test of tests) {
        const order = r % 2 === 1 ? [...clients.values()] : [...clients.values()].reverse();
        for (const c of order) {
          const s = setups.get(c.runtime.name)!;
          const p = await plan(s, test);
          const load = await loadAverage();
          const result = await iperf(p.from, p.to, seconds);
          results.push({ runtime: c.runtime.name, test, round: r, result, load });
          say(`round ${r} ${test.padEnd(10)} ${c.runtime.name.padEnd(10)} ${result.gbps.toFixed(2)} Gbit/s${result.retransmits ? ` (${result.retransmits} retransmits)` : ''}`);
        }
      }
    }
    facts = await session.facts(values.source!, { iperf3: ['iperf3', ['--version']] });
  } finally {
    await session.stop();
  }

  // --- the report -----------------------------------------------------------------------------
  const of = (rt: string, test: Test): number[] => results.filter((x) => x.runtime === rt && x.test === test).map((x) => x.result.gbps);
  const med = (rt: string, test: Test): number => median(of(rt, test));
  const names = ['usernode', 'containerd'];
  /** The median of the round-by-round ratios pod path / raw path (each pair measured back to back). */
  const paired = (rt: string, t: (typeof targets)[number]): number => {
    const a = of(rt, t.test);
    const b = of(rt, t.raw);
    return median(a.map((x, i) => x / b[i]!).filter(Number.isFinite));
  };
  const targetRow = (t: (typeof targets)[number]): string =>
    `| ${describe[t.test].replace(/\*/g, '')} / ${describe[t.raw].replace(/^raw: /, '')} | ≥ ${t.factor} | ` +
    `${names.map((n) => `**${fmt(paired(n, t), 2)}** (${fmt(med(n, t.test) / med(n, t.raw), 2)})`).join(' | ')} |`;

  process.stdout.write(
    [
      '',
      `iperf3, Gbit/s, medians of ${rounds} rounds:`,
      ...tests.map((t) => `  ${t.padEnd(10)} usernode ${fmt(med('usernode', t), 2)}  containerd ${fmt(med('containerd', t), 2)}  ratio ${fmt(med('usernode', t) / med('containerd', t), 2)}`),
      ...targets.map((t) => `  ${t.test}/${t.raw} (target ≥ ${t.factor}), median of the per-round ratios: usernode ${fmt(paired('usernode', t), 2)}, containerd ${fmt(paired('containerd', t), 2)}`),
      ...(odd.length ? ['  odd:', ...odd.map((o) => `    - ${o}`)] : []),
      '',
    ].join('\n'),
  );
  const loads = results.map((x) => x.load);
  const md = [
    sectionStart('network', 'bench/network.js'),
    '## Pod network (iperf3)',
    '',
    `iperf3 ${facts?.versions.iperf3 ?? ''} (Debian), one TCP stream for ${seconds} s after 1 s not counted, the client sending; Gbit/s as the server received. ` +
      'Each end runs in the namespace it measures, entered the same way for both runtimes: `nsenter -U -m -n -t PID` into the runtime\'s node namespace (usernode\'s holder; containerd\'s rootlesskit child), then `nsenter --net=PATH` into the pod\'s network namespace (from the verbose PodSandboxStatus). ' +
      `Each runtime has a server pod and a client pod (busybox \`sleep\`, started through the CRI). Pod → host and node namespace → host go to an iperf3 server on the host at ${hostAddress} (host loopback is off in the node namespace). ` +
      "Host → pod: a hostPort (containerPort 5201) — usernode forwards it through rootlesskit's port API to the pod's address; containerd's CRI does not talk to rootlesskit, so the benchmark adds the same forward for it (portmap's DNAT is configured too, as kubelet would ask). " +
      `The runtimes alternate measurement by measurement, ${rounds} rounds.`,
    '',
    '| Gbit/s | usernode median | usernode min–max | containerd median | containerd min–max | usernode/containerd |',
    '|---|---:|---:|---:|---:|---:|',
    ...tests.map((t) => ratioRow(describe[t], summarize(of('usernode', t)), summarize(of('containerd', t)), 2)),
    '',
    "Against DESIGN.md's targets, each runtime to its own raw path, measured right before it in each round: the median of the per-round ratios (in parentheses: the ratio of the medians above):",
    '',
    '| path / its raw path | target | usernode | containerd |',
    '|---|---:|---:|---:|',
    ...targets.map(targetRow),
    '',
    ...machineLines(facts, [`- 1-minute load average as the measurements began: ${fmt(Math.min(...loads), 2)}–${fmt(Math.max(...loads), 2)}`]),
    ...sectionTail('network', odd),
  ].join('\n');
  await writeResults(values, 'network', md, { facts, results, odd });
}

/**
 * A runtime's two pods (the server one with a hostPort), the argv prefixes into them, and the
 * host ports: the pod's hostPort and a raw forward of the port driver into the node namespace.
 */
async function setUp(c: PodClient, forwards: { ports: RootlesskitPorts; id: number }[]): Promise<Setup> {
  const rt: CriRuntime = c.runtime;
  const node = await rt.enterArgv();
  const ports = new RootlesskitPorts((await rt.nodeNamespace()).portApiSocket);
  const hostPort = await freePort('0.0.0.0');
  const serverPod = await c.start(await c.config('iperf-server', { port: { host: hostPort, container: innerPort } }));
  const clientPod = await c.start(await c.config('iperf-client'));
  const server = await c.network(serverPod.id);
  const client = await c.network(clientPod.id);
  if (rt.name === 'containerd') {
    const f = await ports.add({ protocol: 'tcp', hostIP: '0.0.0.0', hostPort, childIP: server.ip, childPort: innerPort });
    forwards.push({ ports, id: f.id });
  }
  const rawPort = await freePort('127.0.0.1');
  const raw = await ports.add({ protocol: 'tcp', hostIP: '127.0.0.1', hostPort: rawPort, childIP: '127.0.0.1', childPort: innerPort });
  forwards.push({ ports, id: raw.id });
  return {
    node,
    server: { prefix: [...node, 'nsenter', `--net=${server.netns}`], ip: server.ip },
    client: [...node, 'nsenter', `--net=${client.netns}`],
    hostPort,
    rawPort,
  };
}

main().catch((e: unknown) => {
  console.error(`bench: ${e instanceof Error ? (e.stack ?? e.message) : String(e)}`);
  process.exit(1);
});
