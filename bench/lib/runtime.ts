import { createWriteStream, type WriteStream } from 'node:fs';
import type { ChildProcess } from 'node:child_process';

import { processesOf, run, sleep, type Proc, type RunResult } from './proc.js';

// What the benchmarks need of a CRI runtime: start it, reach its socket (crictl
// and the project's gRPC client), say what of an image it still stores, read
// its own account of a pull from its log, enter its node namespace, forward a
// host port into it, list its processes, stop it and leave nothing behind.

export interface Leftovers {
  /** Content blobs (sha256:…) still stored. */
  blobs: string[];
  /** Unpacked layers / snapshots still stored. */
  layers: string[];
}

/** A point of a pull's timeline, from the runtime's log: seconds since the pull started. */
export interface TimelinePoint {
  at: number;
  what: string;
}

export interface PullAccount {
  /** The runtime's own duration of the PullImage call, in milliseconds (from its log). */
  serverMs: number | undefined;
  timeline: TimelinePoint[];
}

export abstract class CriRuntime {
  abstract readonly name: string;
  /** unix://… */
  abstract readonly endpoint: string;
  /** The CRI socket's path (for proto/client.ts). */
  abstract readonly socketPath: string;
  protected logText = '';
  protected logFile: WriteStream | undefined;
  /** The process the benchmark spawned (usernode run; rootlesskit for containerd). */
  protected child: ChildProcess | undefined;
  /** The node namespace's user namespace, as /proc/PID/ns/user reads. */
  protected userNs: string | undefined;

  constructor(
    readonly crictl: string,
    readonly crictlConfig: string,
  ) {}

  abstract start(): Promise<void>;
  abstract stop(): Promise<string[]>;
  abstract leftovers(): Promise<Leftovers>;
  /** The runtime's account of the pull of `ref` whose log starts at `logOffset`. */
  abstract account(ref: string, logOffset: number): PullAccount;
  abstract version(): Promise<string>;
  /** The node namespace: a process to `nsenter -U -m -n -t`, and rootlesskit's port API socket. */
  abstract nodeNamespace(): Promise<{ pid: number; portApiSocket: string }>;

  /** argv prefix that runs a command in the node namespace: the same nsenter for every runtime. */
  async enterArgv(): Promise<string[]> {
    return ['nsenter', '--preserve-credentials', '-U', '-m', '-n', '-t', String((await this.nodeNamespace()).pid), '--'];
  }

  /**
   * Every process of this runtime: what the benchmark spawned and its descendants
   * (rootlesskit, slirp4netns, the agent) and everything in the node namespace's
   * user namespace (the runtime, monitors, shims, the containers).
   */
  async processes(): Promise<Proc[]> {
    const all = await processesOf(process.getuid!());
    const ours = new Set<number>(this.child?.pid === undefined ? [] : [this.child.pid]);
    for (let grown = true; grown; ) {
      grown = false;
      for (const p of all) if (!ours.has(p.pid) && (ours.has(p.ppid) || (this.userNs !== undefined && p.userNs === this.userNs))) (ours.add(p.pid), (grown = true));
    }
    return all.filter((p) => ours.has(p.pid));
  }

  get log(): string {
    return this.logText;
  }

  /**
   * After the runtime stopped: processes still in its user namespace 5 s on, killed and named.
   * Zombies are not counted: dead already, they wait for this machine's init to reap them.
   */
  protected async namespaceLeftovers(where: string): Promise<string[]> {
    if (!this.userNs) return [];
    let left: Proc[] = [];
    for (let i = 0; i < 50; i++) {
      left = (await processesOf(process.getuid!())).filter((p) => p.userNs === this.userNs && p.state !== 'Z');
      if (left.length === 0) return [];
      await sleep(100);
    }
    return left.map((p) => {
      try {
        process.kill(p.pid, 'SIGKILL');
      } catch {
        // gone
      }
      return `left in ${where}: pid ${p.pid} (${p.name}, state ${p.state}) ${p.cmdline}; killed`;
    });
  }

  protected captureLog(child: ChildProcess, path: string): void {
    this.logFile = createWriteStream(path, { flags: 'a' });
    const take = (d: Buffer): void => {
      this.logText += d.toString();
      this.logFile?.write(d);
    };
    child.stdout?.on('data', take);
    child.stderr?.on('data', take);
  }

  crictlRun(args: readonly string[], timeoutMs = 600000): Promise<RunResult> {
    return run(this.crictl, ['--config', this.crictlConfig, '--runtime-endpoint', this.endpoint, '--image-endpoint', this.endpoint, '--timeout', '60s', ...args], {
      timeoutMs,
    });
  }

  async crictlMust(args: readonly string[], timeoutMs?: number): Promise<RunResult> {
    const r = await this.crictlRun(args, timeoutMs);
    if (r.code !== 0) throw new Error(`${this.name}: crictl ${args.join(' ')} failed (${r.code ?? r.signal}):\n${r.stdout}${r.stderr}`);
    return r;
  }
}

/** Log lines of the form `time=… level=… msg=…` (usernode) or `time="…" level=… msg="…"` (containerd, logrus). */
export function parseLogLine(line: string): { time: number; msg: string; fields: Record<string, string> } | undefined {
  const fields: Record<string, string> = {};
  const re = /(\w[\w.-]*)=("(?:[^"\\]|\\.)*"|\S+)/g;
  for (let m = re.exec(line); m; m = re.exec(line)) {
    const raw = m[2]!;
    fields[m[1]!] = raw.startsWith('"') ? unquote(raw) : raw;
  }
  const time = fields.time ? Date.parse(fields.time) : NaN;
  if (Number.isNaN(time) || fields.msg === undefined) return undefined;
  return { time: nanoTime(fields.time!), msg: fields.msg, fields };
}

/** Milliseconds since the epoch with the sub-millisecond digits an RFC 3339 time may carry. */
function nanoTime(s: string): number {
  const frac = /\.(\d+)/.exec(s)?.[1] ?? '';
  const base = Date.parse(s.replace(/\.\d+/, ''));
  return base + (frac ? Number(`0.${frac}`) * 1000 : 0);
}

function unquote(raw: string): string {
  try {
    return JSON.parse(raw) as string;
  } catch {
    return raw.slice(1, -1);
  }
}
