import { spawn, type ChildProcess } from 'node:child_process';
import { mkdir, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { createServer, type AddressInfo } from 'node:net';
import { join } from 'node:path';

import { findRepoRoot } from './proto_compare.js';

// The test bed's handle on a real usernode: the real agent, started as the
// user running the tests, with its XDG folders in a fresh temp folder so tests
// never touch the user's own node. Everything goes through the real CLI.

export const repoRoot = findRepoRoot(import.meta.url);
export const usernodeBin = join(repoRoot, 'bin', 'usernode');

/** What the test bed set up (scripts/test.sh); missing is a failure, never a skip. */
export function requiredEnv(name: string): string {
  const v = process.env[name];
  if (!v) throw new Error(`${name} is not set: run the tests with "npm test", which starts the test registries and pushes the test images`);
  return v;
}

/** A tool the test bed built (scripts/build-test-tools.sh); missing is a failure, never a skip. */
export function requiredTool(envName: 'USERNODE_CRICTL' | 'USERNODE_CRITEST'): string {
  const p = process.env[envName];
  if (!p) throw new Error(`${envName} is not set: run the tests with "npm test", which builds crictl and critest`);
  return p;
}

export interface Result {
  code: number | null;
  signal: NodeJS.Signals | null;
  stdout: string;
  stderr: string;
}

export function exec(file: string, args: readonly string[], opts: { env?: NodeJS.ProcessEnv; timeoutMs?: number; input?: string } = {}): Promise<Result> {
  return new Promise((resolve, reject) => {
    const child = spawn(file, args, { env: opts.env ?? process.env, stdio: ['pipe', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (d: Buffer) => (stdout += d.toString()));
    child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
    const timer = setTimeout(() => child.kill('SIGKILL'), opts.timeoutMs ?? 60000);
    child.on('error', (e) => {
      clearTimeout(timer);
      reject(e);
    });
    child.on('close', (code, signal) => {
      clearTimeout(timer);
      resolve({ code, signal, stdout, stderr });
    });
    // A child that exits without reading its input is not an error of ours.
    child.stdin.on('error', () => {});
    child.stdin.end(opts.input ?? '');
  });
}

export class AgentProcess {
  log = '';
  readonly exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;

  constructor(readonly child: ChildProcess) {
    child.stdout?.on('data', (d: Buffer) => (this.log += d.toString()));
    child.stderr?.on('data', (d: Buffer) => (this.log += d.toString()));
    this.exited = new Promise((resolve) => child.on('exit', (code, signal) => resolve({ code, signal })));
  }

  get pid(): number {
    return this.child.pid!;
  }

  /** The /metrics URL the agent logged. */
  get metricsUrl(): string {
    const m = /msg="metrics listening" address=(\S+)/.exec(this.log);
    if (!m) throw new Error(`the agent logged no metrics address:\n${this.log}`);
    return m[1]!;
  }

  /** Resolves when the agent logs that it is ready; rejects if it exits first or after `timeoutMs`. */
  async ready(timeoutMs = 60000): Promise<void> {
    const deadline = Date.now() + timeoutMs;
    let gone = false;
    void this.exited.then(() => (gone = true));
    while (!this.log.includes('usernode is ready')) {
      if (gone) throw new Error(`usernode run exited before it was ready:\n${this.log}`);
      if (Date.now() > deadline) throw new Error(`usernode run was not ready after ${timeoutMs} ms:\n${this.log}`);
      await new Promise((r) => setTimeout(r, 50));
    }
  }
}

export class TestNode {
  private constructor(
    readonly dir: string,
    readonly env: NodeJS.ProcessEnv,
  ) {}

  static async create(): Promise<TestNode> {
    const dir = await mkdtemp('/tmp/un-');
    const run = join(dir, 'run');
    await mkdir(run, { mode: 0o700 });
    const env = {
      ...process.env,
      XDG_RUNTIME_DIR: run,
      XDG_DATA_HOME: join(dir, 'data'),
      XDG_CONFIG_HOME: join(dir, 'config'),
    };
    const node = new TestNode(dir, env);
    await node.writeConfig('');
    return node;
  }

  get runtimeDir(): string {
    return join(this.dir, 'run', 'usernode');
  }

  get socket(): string {
    return join(this.runtimeDir, 'cri.sock');
  }

  usernode(args: readonly string[], timeoutMs = 120000): Promise<Result> {
    return exec(process.execPath, [usernodeBin, ...args], { env: this.env, timeoutMs });
  }

  start(args: readonly string[] = []): AgentProcess {
    return new AgentProcess(spawn(process.execPath, [usernodeBin, 'run', ...args], { env: this.env, stdio: ['ignore', 'pipe', 'pipe'] }));
  }

  /** Writes the agent's config file ($XDG_CONFIG_HOME/usernode/config.yaml, read by default). */
  async writeConfig(yaml: string): Promise<string> {
    const dir = join(this.dir, 'config', 'usernode');
    await mkdir(dir, { recursive: true });
    const path = join(dir, 'config.yaml');
    // Any free port: test nodes must not fight over the default 10255.
    await writeFile(path, /^metricsAddress:/m.test(yaml) ? yaml : `metricsAddress: "127.0.0.1:0"\n${yaml}`);
    return path;
  }

  enter(command: readonly string[]): Promise<Result> {
    return this.usernode(['enter', '--', ...command]);
  }

  /** The crictl binary the tests use (for spawning it with a stdin or in the background). */
  get crictlPath(): string {
    return requiredTool('USERNODE_CRICTL');
  }

  crictl(args: readonly string[]): Promise<Result> {
    const endpoint = `unix://${this.socket}`;
    return exec(requiredTool('USERNODE_CRICTL'), ['--runtime-endpoint', endpoint, '--image-endpoint', endpoint, '--timeout', '20s', ...args], {
      env: this.env,
    });
  }

  async nodeNamespaceRecord(): Promise<{ holderPid: number; parentPid: number; userNs: string; netNs: string }> {
    return JSON.parse(await readFile(join(this.runtimeDir, 'node-namespace.json'), 'utf8')) as {
      holderPid: number;
      parentPid: number;
      userNs: string;
      netNs: string;
    };
  }

  /** Stops everything this node started and removes its folder. Safe to call twice. */
  async destroy(): Promise<void> {
    await this.usernode(['stop']).catch(() => undefined);
    await rm(this.dir, { recursive: true, force: true });
  }
}

/** A fresh node whose agent is ready, with the test registry's busybox pulled (test.sh pushes it). */
export async function nodeWithBusybox(): Promise<{ node: TestNode; agent: AgentProcess; busybox: string }> {
  const bed = JSON.parse(await readFile(requiredEnv('USERNODE_TEST_IMAGES'), 'utf8')) as { registry: string };
  const busybox = `${bed.registry}/usernode/busybox:latest`;
  const node = await TestNode.create();
  await node.writeConfig(`registries:\n  "${bed.registry}": { plainHttp: true }\n`);
  const agent = node.start();
  await agent.ready();
  const pull = await node.crictl(['pull', busybox]);
  if (pull.code !== 0) throw new Error(`crictl pull ${busybox}: ${pull.stderr}`);
  return { node, agent, busybox };
}

export const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

/** Polls `f` until it returns a value other than undefined, or fails after `timeoutMs`. */
export async function eventually<T>(what: string, f: () => Promise<T | undefined>, timeoutMs = 30000): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const v = await f().catch(() => undefined);
    if (v !== undefined) return v;
    if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
    await sleep(100);
  }
}

/** This user's live processes (for leak checks). */
export async function processesOf(): Promise<Array<{ pid: number; comm: string }>> {
  const { processesOf: all } = await import('../../pkg/netns/procfs.js');
  return (await all(process.getuid?.() ?? 0)).map((p) => ({ pid: p.pid, comm: p.comm }));
}

/**
 * The start of most container tests: a node that pulls from the test registry,
 * running, with the test busybox pulled and one pod made by `crictl runp` from
 * `podConfig(node.dir)`.
 */
export async function startBusyboxPod(podConfig: (dir: string) => Record<string, unknown>): Promise<{ node: TestNode; agent: AgentProcess; busybox: string; pod: string; podFile: string }> {
  const { node, agent, busybox } = await nodeWithBusybox();
  const podFile = join(node.dir, 'pod.json');
  await writeFile(podFile, JSON.stringify(podConfig(node.dir)));
  const r = await node.crictl(['runp', podFile]);
  if (r.code !== 0) throw new Error(`crictl runp: ${r.stderr}`);
  return { node, agent, busybox, pod: r.stdout.trim(), podFile };
}

let containerFiles = 0;

/** `crictl create` of a container `config` in `pod`; resolves with its id. */
export async function createContainer(node: TestNode, pod: string, podFile: string, config: Record<string, unknown>): Promise<string> {
  const f = join(node.dir, `ctr-${++containerFiles}.json`);
  await writeFile(f, JSON.stringify(config));
  const r = await node.crictl(['create', pod, f, podFile]);
  if (r.code !== 0) throw new Error(`crictl create: ${r.stderr}`);
  return r.stdout.trim();
}

/** A TCP port on 127.0.0.1 that was free a moment ago. */
export async function freePort(): Promise<number> {
  const s = createServer();
  await new Promise<void>((r) => s.listen(0, '127.0.0.1', r));
  const port = (s.address() as AddressInfo).port;
  await new Promise<void>((r) => s.close(() => r()));
  return port;
}
