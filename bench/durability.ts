import { type ChildProcess, spawn } from 'node:child_process';
import { mkdir, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';

import { criClients } from '../proto/client.js';
import { RegistryPusher } from '../test/images/registry_push.js';
import { buildRandomImage } from './lib/random_image.js';

// What durability costs (issue 13, deliverable 3): the same workload against
// two builds of usernode in one run, alternating — "before" (records renamed
// into place without fsync, blobs and layers never synced) and "after" (this
// tree: fsync of file and folder, blobs fsynced, layers synced before they
// count). Per round and build: a fresh agent, a pull + unpack of the bench's
// random image (bench/lib/random_image.ts), then pod starts one after the
// other (RunPodSandbox + CreateContainer + StartContainer of busybox sleep).
// Prints medians and the after/before ratio; asserts nothing.
//   USERNODE_BENCH_BEFORE=<built tree of the old commit> node dist/bench/durability.js
// Run as the test user (scripts/test.sh dist/bench/durability.js, with the env set), registry up.

const before = process.env.USERNODE_BENCH_BEFORE ?? '';
const after = join(import.meta.dirname, '..', '..');
const registry = process.env.USERNODE_REGISTRY ?? '';
const rounds = Number(process.env.USERNODE_BENCH_ROUNDS ?? '3');
const podsPerRound = Number(process.env.USERNODE_BENCH_PODS ?? '8');
const layerMiB = Number(process.env.USERNODE_BENCH_LAYER_MIB ?? '20');

type Call = <Res>(client: object, method: string, req: unknown) => Promise<Res>;
const call: Call = (client, method, req) =>
  new Promise((resolve, reject) => {
    const f = (client as Record<string, (r: unknown, o: object, cb: (e: Error | null, r: unknown) => void) => void>)[method]!.bind(client);
    f(req, { deadline: Date.now() + 300000 }, (e, r) => (e ? reject(new Error(`${method}: ${e.message}`)) : resolve(r as never)));
  });

async function agentOf(tree: string, dir: string): Promise<{ child: ChildProcess; env: NodeJS.ProcessEnv; socket: string; log: () => string }> {
  const env = { ...process.env, XDG_RUNTIME_DIR: join(dir, 'run'), XDG_DATA_HOME: join(dir, 'data'), XDG_CONFIG_HOME: join(dir, 'config') };
  await mkdir(join(dir, 'run'), { recursive: true, mode: 0o700 });
  await mkdir(join(dir, 'config', 'usernode'), { recursive: true });
  await writeFile(join(dir, 'config', 'usernode', 'config.yaml'), `metricsAddress: "127.0.0.1:0"\nregistries:\n  "${registry}": { plainHttp: true }\n`);
  const child = spawn(process.execPath, [join(tree, 'bin', 'usernode'), 'run'], { env, stdio: ['ignore', 'pipe', 'pipe'] });
  let log = '';
  child.stdout!.on('data', (d: Buffer) => (log += d.toString()));
  child.stderr!.on('data', (d: Buffer) => (log += d.toString()));
  const deadline = Date.now() + 120000;
  while (!log.includes('usernode is ready')) {
    if (child.exitCode !== null || Date.now() > deadline) throw new Error(`agent of ${tree} not ready:\n${log.slice(-3000)}`);
    await new Promise((r) => setTimeout(r, 50));
  }
  return { child, env, socket: join(dir, 'run', 'usernode', 'cri.sock'), log: () => log };
}

async function stopAgent(tree: string, a: { child: ChildProcess; env: NodeJS.ProcessEnv }): Promise<void> {
  await new Promise<void>((resolve) => {
    const s = spawn(process.execPath, [join(tree, 'bin', 'usernode'), 'stop'], { env: a.env, stdio: 'ignore' });
    s.on('exit', () => resolve());
  });
  a.child.kill('SIGTERM');
}

const ms = (t: bigint): number => Number(process.hrtime.bigint() - t) / 1e6;
const median = (xs: number[]): number => {
  const s = [...xs].sort((a, b) => a - b);
  return s.length % 2 ? s[(s.length - 1) / 2]! : (s[s.length / 2 - 1]! + s[s.length / 2]!) / 2;
};

async function round(tree: string, image: string, busybox: string, n: number): Promise<{ pull: number; pods: number[] }> {
  const dir = await mkdtemp('/tmp/un-dur-');
  const a = await agentOf(tree, dir);
  const c = criClients(a.socket);
  try {
    await call(c.image, 'PullImage', { image: { image: busybox } });
    const t0 = process.hrtime.bigint();
    await call(c.image, 'PullImage', { image: { image } });
    const pull = ms(t0);
    const pods: number[] = [];
    for (let i = 0; i < podsPerRound; i++) {
      const config = { metadata: { name: `p${n}-${i}`, namespace: 'bench', uid: `u${n}-${i}`, attempt: 0 }, logDirectory: join(dir, 'logs', String(i)), linux: {} };
      const t = process.hrtime.bigint();
      const { podSandboxId } = await call<{ podSandboxId: string }>(c.runtime, 'RunPodSandbox', { config });
      const { containerId } = await call<{ containerId: string }>(c.runtime, 'CreateContainer', {
        podSandboxId,
        config: { metadata: { name: 'c', attempt: 0 }, image: { image: busybox }, command: ['sleep', '3600'], logPath: 'c.log' },
        sandboxConfig: config,
      });
      await call(c.runtime, 'StartContainer', { containerId });
      pods.push(ms(t));
    }
    return { pull, pods };
  } catch (e: unknown) {
    console.error(`agent log (${tree}):\n${a.log().slice(-6000)}`);
    throw e;
  } finally {
    c.close();
    await stopAgent(tree, a);
    await rm(dir, { recursive: true, force: true }).catch(() => undefined);
  }
}

async function main(): Promise<void> {
  if (!before || !registry) throw new Error('set USERNODE_BENCH_BEFORE (a built tree of the old commit) and USERNODE_REGISTRY');
  const img = await buildRandomImage({ seed: 'usernode-bench-v1', layers: 5, layerBytes: layerMiB * 2 ** 20 });
  const tag = `5x${layerMiB}MiB`;
  await new RegistryPusher({ host: registry }).push('usernode-bench/random', [tag], img.built);
  const image = `${registry}/usernode-bench/random:${tag}`;
  const busybox = `${registry}/usernode/busybox:latest`;
  const results: Record<'before' | 'after', { pulls: number[]; pods: number[] }> = { before: { pulls: [], pods: [] }, after: { pulls: [], pods: [] } };
  for (let n = 0; n < rounds; n++) {
    for (const [name, tree] of (n % 2 === 0 ? [['before', before], ['after', after]] : [['after', after], ['before', before]]) as Array<['before' | 'after', string]>) {
      // A round whose agent could not start (the shared test machine's rootlesskit, now and then) is run again once.
      const r = await round(tree, image, busybox, n).catch((e: unknown) => {
        console.error(`round ${n + 1} ${name} failed, once more: ${e instanceof Error ? e.message.split('\n')[0] : String(e)}`);
        return round(tree, image, busybox, n);
      });
      results[name].pulls.push(r.pull);
      results[name].pods.push(...r.pods);
      console.log(`round ${n + 1} ${name}: pull ${r.pull.toFixed(0)} ms, pod start median ${median(r.pods).toFixed(0)} ms`);
    }
  }
  const cpu = (await readFile('/proc/cpuinfo', 'utf8')).match(/model name\s*:\s*(.*)/)?.[1] ?? '?';
  console.log(`machine: ${cpu}, ${(await readFile('/proc/cpuinfo', 'utf8')).match(/^processor/gm)?.length ?? '?'} cores; image ${(img.compressedBytes / 1e6).toFixed(1)} MB in 5 layers, ${img.files} files`);
  for (const [what, key] of [['pull + unpack', 'pulls'], ['pod start (Run+Create+Start)', 'pods']] as const) {
    const b = median(results.before[key]);
    const a = median(results.after[key]);
    console.log(`${what}: before ${b.toFixed(0)} ms, after ${a.toFixed(0)} ms (n=${results.after[key].length} each), after/before ${(a / b).toFixed(2)}`);
  }
}

main().catch((e: unknown) => {
  console.error(`durability: ${e instanceof Error ? (e.stack ?? e.message) : String(e)}`);
  process.exit(1);
});
