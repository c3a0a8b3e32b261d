import { spawn } from 'node:child_process';
import { mkdir, readdir, readFile, writeFile } from 'node:fs/promises';
import { dirname, join } from 'node:path';

import { run, sleep } from './proc.js';
import { CriRuntime, parseLogLine, type Leftovers, type PullAccount } from './runtime.js';

// usernode as the benchmark runs it: the real `bin/usernode run` of this tree,
// as the calling (unprivileged) user, with XDG folders of its own under the
// benchmark's folder and a config file making the test registry plain HTTP.

export interface UsernodeOptions {
  /** The benchmark's folder for this runtime (run/, data/, config/ go under it). */
  dir: string;
  usernodeBin: string;
  crictl: string;
  registry: string;
  logPath: string;
}

export class UsernodeRuntime extends CriRuntime {
  readonly name = 'usernode';
  readonly endpoint: string;
  readonly socketPath: string;
  readonly env: NodeJS.ProcessEnv;
  private exited: Promise<void> | undefined;

  constructor(private readonly o: UsernodeOptions) {
    super(o.crictl, join(o.dir, 'crictl.yaml'));
    this.env = {
      ...process.env,
      XDG_RUNTIME_DIR: join(o.dir, 'run'),
      XDG_DATA_HOME: join(o.dir, 'data'),
      XDG_CONFIG_HOME: join(o.dir, 'config'),
    };
    this.socketPath = join(o.dir, 'run', 'usernode', 'cri.sock');
    this.endpoint = `unix://${this.socketPath}`;
  }

  private get dataDir(): string {
    return join(this.o.dir, 'data', 'usernode');
  }

  async start(): Promise<void> {
    await mkdir(join(this.o.dir, 'run'), { recursive: true, mode: 0o700 });
    await mkdir(join(this.o.dir, 'config', 'usernode'), { recursive: true, mode: 0o700 });
    // debug: the per-layer "layer applied" lines, for the timeline (a handful of lines per pull).
    // The metrics endpoint on a port of its own (any free one), not the default that a node of
    // this user may already hold — where this tree's agent has one (the config rejects unknown keys).
    const agentConfig = await readFile(join(dirname(this.o.usernodeBin), '..', 'dist', 'cmd', 'agent', 'config.js'), 'utf8').catch(() => '');
    await writeFile(
      join(this.o.dir, 'config', 'usernode', 'config.yaml'),
      `logLevel: debug\nregistries:\n  "${this.o.registry}": { plainHttp: true }\n` + (agentConfig.includes('metricsAddress') ? 'metricsAddress: 127.0.0.1:0\n' : ''),
    );
    await writeFile(this.crictlConfig, `runtime-endpoint: ${this.endpoint}\nimage-endpoint: ${this.endpoint}\ntimeout: 60\n`);
    const child = spawn(process.execPath, [this.o.usernodeBin, 'run'], { env: this.env, stdio: ['ignore', 'pipe', 'pipe'] });
    this.child = child;
    this.captureLog(child, this.o.logPath);
    let gone = false;
    this.exited = new Promise((resolve) => child.on('exit', () => ((gone = true), resolve())));
    const deadline = Date.now() + 120000;
    while (!this.logText.includes('usernode is ready')) {
      if (gone) throw new Error(`usernode run exited before it was ready:\n${this.logText}`);
      if (Date.now() > deadline) throw new Error(`usernode run was not ready after 120 s:\n${this.logText}`);
      await sleep(50);
    }
    this.userNs = (await this.nodeNamespaceRecord()).userNs;
  }

  private async nodeNamespaceRecord(): Promise<{ userNs: string; holderPid: number }> {
    return JSON.parse(await readFile(join(this.o.dir, 'run', 'usernode', 'node-namespace.json'), 'utf8')) as { userNs: string; holderPid: number };
  }

  /** The holder process whose namespaces the runtime half joins (what `usernode enter` enters); rootlesskit's state is run/usernode/rootlesskit. */
  async nodeNamespace(): Promise<{ pid: number; portApiSocket: string }> {
    const r = await this.nodeNamespaceRecord();
    return { pid: r.holderPid, portApiSocket: join(this.o.dir, 'run', 'usernode', 'rootlesskit', 'api.sock') };
  }

  /** The snapshotter usernode chose (crictl info → snapshotter), to put in the report. */
  async snapshotter(): Promise<string> {
    const r = await this.crictlMust(['info']);
    const info = JSON.parse(r.stdout) as Record<string, unknown>;
    const raw = info.snapshotter ?? (info.info as Record<string, unknown> | undefined)?.snapshotter;
    const parsed = typeof raw === 'string' ? (() => { try { return JSON.parse(raw) as unknown; } catch { return raw; } })() : raw;
    if (typeof parsed === 'string') return parsed;
    const o = parsed as { snapshotter?: string; reason?: string } | undefined;
    return o?.snapshotter ? `${o.snapshotter}${o.reason ? ` (${o.reason})` : ''}` : 'unknown';
  }

  async leftovers(): Promise<Leftovers> {
    const list = async (d: string): Promise<string[]> => readdir(d).catch(() => []);
    const blobs = (await list(join(this.dataDir, 'images', 'content', 'blobs', 'sha256'))).map((n) => `sha256:${n}`);
    const layers = (await list(join(this.dataDir, 'snapshots', 'layers'))).map((n) => `layer ${n}`);
    return { blobs, layers };
  }

  account(ref: string, logOffset: number): PullAccount {
    const lines = this.logText.slice(logOffset).split('\n').map(parseLogLine);
    let start: number | undefined;
    let serverMs: number | undefined;
    const timeline: PullAccount['timeline'] = [];
    for (const l of lines) {
      if (!l) continue;
      if (l.msg === 'pulling image' && l.fields.image === ref) start = l.time;
      if (start === undefined) continue;
      const at = (l.time - start) / 1000;
      if (l.msg === 'layer fetched') timeline.push({ at, what: `layer ${l.fields.of} fetched (${l.fields.layer?.slice(0, 19)}, ${l.fields.bytes} B)` });
      else if (l.msg === 'layer applied') timeline.push({ at, what: `layer applied (${l.fields.entries} entries, ${l.fields.bytes} B)` });
      else if (l.msg === 'image pulled' && l.fields.image === ref) {
        serverMs = Number(l.fields.seconds) * 1000;
        timeline.push({ at, what: 'image pulled' });
        break;
      }
    }
    return { serverMs, timeline };
  }

  async version(): Promise<string> {
    const r = await run(process.execPath, [this.o.usernodeBin, 'version'], { env: this.env });
    return r.stdout.trim() || r.stderr.trim();
  }

  /** `usernode stop`, then checks that nothing of the node namespace runs. Returns what it found odd. */
  async stop(): Promise<string[]> {
    const odd: string[] = [];
    const r = await run(process.execPath, [this.o.usernodeBin, 'stop'], { env: this.env, timeoutMs: 60000 });
    // Its leak check is user-wide: another node of this user (a test run, say) counts as "still running".
    // What matters here is this node's namespace, checked below.
    if (r.code !== 0 && !/still running/.test(r.stderr)) odd.push(`usernode stop exited ${r.code}: ${(r.stdout + r.stderr).trim()}`);
    if (this.child && this.exited) {
      const done = await Promise.race([this.exited.then(() => true), sleep(15000).then(() => false)]);
      if (!done) {
        odd.push(`usernode run (pid ${this.child.pid}) was still running after usernode stop; killed`);
        this.child.kill('SIGKILL');
        await this.exited;
      }
    }
    odd.push(...(await this.namespaceLeftovers('the node namespace after usernode stop')));
    this.logFile?.end();
    return odd;
  }
}
