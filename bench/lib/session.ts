import { existsSync, readdirSync } from 'node:fs';
import { mkdir, mkdtemp, rm } from 'node:fs/promises';
import { homedir } from 'node:os';
import { join, resolve } from 'node:path';

import { usernodeBin } from '../../test/lib/agent.js';
import { ContainerdRuntime } from './containerd_runtime.js';
import { machineFacts, toolVersion, type MachineFacts } from './machine.js';
import type { CriRuntime } from './runtime.js';
import { UsernodeRuntime } from './usernode_runtime.js';

// What every side-by-side benchmark does around its measurements: find crictl,
// make a fresh folder, start usernode and rootless containerd as this
// (unprivileged) user, stop both on the way out (and on SIGINT/SIGTERM),
// collect what went odd, and the machine's facts and tool versions.

export interface SessionOptions {
  /** The benchmark's folder (made fresh when not given). */
  dir?: string;
  keep: boolean;
  crictl?: string;
  registry: string;
  /** containerd's sandbox_image (pods need one). */
  sandboxImage?: string;
}

export interface BenchFacts {
  machine: MachineFacts;
  versions: Record<string, string>;
}

/** The options every benchmark takes (node:util parseArgs), and what BenchSession.fromArgs reads of them. */
export const benchOptions = {
  registry: { type: 'string', default: process.env.USERNODE_REGISTRY || '192.168.213.2:5000' },
  out: { type: 'string' },
  json: { type: 'string' },
  dir: { type: 'string' },
  keep: { type: 'boolean', default: false },
  crictl: { type: 'string' },
  source: { type: 'string', default: '' },
} as const;
export const benchUsage = '[--registry HOST:PORT] [--out FILE] [--json FILE] [--dir DIR] [--keep] [--crictl PATH] [--source TEXT]';

interface BenchArgs {
  registry?: string | undefined;
  dir?: string | undefined;
  keep?: boolean | undefined;
  crictl?: string | undefined;
}

export const say = (s: string): void => void process.stdout.write(`bench: ${s}\n`);

export function findCrictl(): string {
  if (process.env.USERNODE_CRICTL) return process.env.USERNODE_CRICTL;
  const tools = join(homedir(), '.cache', 'usernode', 'tools');
  const dirs = existsSync(tools) ? readdirSync(tools).filter((d) => d.startsWith('cri-tools-')).sort() : [];
  for (const d of dirs.reverse()) if (existsSync(join(tools, d, 'crictl'))) return join(tools, d, 'crictl');
  throw new Error(`no crictl: set USERNODE_CRICTL or build it with scripts/build-test-tools.sh (into ${tools}/cri-tools-*/crictl)`);
}

export class BenchSession {
  readonly usernode: UsernodeRuntime;
  readonly containerd: ContainerdRuntime;
  /** Both, in the order the benchmarks alternate them. */
  readonly runtimes: CriRuntime[];
  /** What went odd during the run, for the report. */
  readonly odd: string[] = [];
  private stopped = false;
  /** Run before the runtimes stop (e.g. removing pods), first registered first. */
  private readonly beforeStop: (() => Promise<void>)[] = [];

  private constructor(
    readonly dir: string,
    readonly crictl: string,
    private readonly keep: boolean,
    o: SessionOptions,
  ) {
    const logs = join(dir, 'logs');
    this.containerd = new ContainerdRuntime({ dir: join(dir, 'containerd'), crictl, registry: o.registry, logPath: join(logs, 'containerd.log'), ...(o.sandboxImage ? { sandboxImage: o.sandboxImage } : {}) });
    this.usernode = new UsernodeRuntime({ dir: join(dir, 'usernode'), usernodeBin, crictl, registry: o.registry, logPath: join(logs, 'usernode.log') });
    this.runtimes = [this.usernode, this.containerd];
  }

  /** From the parsed `benchOptions`. */
  static fromArgs(v: BenchArgs, sandboxImage?: string): Promise<BenchSession> {
    return BenchSession.create({
      registry: v.registry ?? '192.168.213.2:5000',
      keep: v.keep ?? false,
      ...(v.dir ? { dir: v.dir } : {}),
      ...(v.crictl ? { crictl: v.crictl } : {}),
      ...(sandboxImage ? { sandboxImage } : {}),
    });
  }

  /** A fresh folder and both runtimes' objects; `start` starts them. */
  static async create(o: SessionOptions): Promise<BenchSession> {
    if (process.getuid?.() === 0) throw new Error('run the benchmark as an unprivileged user (bench/run.sh does, as usernode-test): both runtimes are rootless');
    const crictl = o.crictl ?? findCrictl();
    const dir = o.dir ? resolve(o.dir) : await mkdtemp('/tmp/usernode-bench-');
    await mkdir(join(dir, 'logs'), { recursive: true, mode: 0o700 });
    const s = new BenchSession(dir, crictl, o.keep, o);
    for (const sig of ['SIGINT', 'SIGTERM'] as const) {
      process.once(sig, () => {
        say(`${sig}: stopping both runtimes`);
        void s.stop().finally(() => process.exit(130));
      });
    }
    return s;
  }

  async start(): Promise<void> {
    await this.containerd.start();
    await this.usernode.start();
  }

  onStop(f: () => Promise<void>): void {
    this.beforeStop.push(f);
  }

  /** Stops both runtimes (once) and removes the folder unless --keep. */
  async stop(): Promise<void> {
    if (this.stopped) return;
    this.stopped = true;
    for (const f of this.beforeStop) await f().catch((e: unknown) => this.odd.push(`before stopping the runtimes: ${(e as Error).message}`));
    // containerd first: `usernode stop` names any rootlesskit of the user still running as a leak.
    this.odd.push(...(await this.containerd.stop().catch((e: unknown) => [`stopping containerd: ${(e as Error).message}`])));
    this.odd.push(...(await this.usernode.stop().catch((e: unknown) => [`stopping usernode: ${(e as Error).message}`])));
    if (!this.keep) await rm(this.dir, { recursive: true, force: true }).catch((e: unknown) => this.odd.push(`could not remove ${this.dir}: ${(e as Error).message}`));
  }

  /** The machine and the versions of everything measured (while both runtimes run). */
  async facts(source: string, extraTools: Record<string, [string, string[]]> = {}): Promise<BenchFacts> {
    const tools: Record<string, [string, string[]]> = {
      runc: ['runc', ['--version']],
      rootlesskit: ['rootlesskit', ['--version']],
      slirp4netns: ['slirp4netns', ['--version']],
      crictl: [this.crictl, ['--version']],
      ...extraTools,
    };
    const versions: Record<string, string> = {
      usernode: `${await this.usernode.version()}${source ? ` (${source})` : ''}`,
      containerd: await this.containerd.version(),
    };
    for (const [k, [file, args]] of Object.entries(tools)) versions[k] = await toolVersion(file, args);
    return { machine: await machineFacts(this.dir), versions };
  }
}
