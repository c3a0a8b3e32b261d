import { createWriteStream, type WriteStream } from 'node:fs';
import type { ChildProcess } from 'node:child_process';

import { run, type RunResult } from './proc.js';

// What the image benchmark needs of a CRI runtime: start it, pull and remove
// through the real crictl, say what of an image it still stores, read its own
// account of a pull from its log, stop it and leave nothing behind.

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
  protected logText = '';
  protected logFile: WriteStream | undefined;

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

  get log(): string {
    return this.logText;
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
