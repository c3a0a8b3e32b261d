import { spawn } from 'node:child_process';
import { createServer } from 'node:net';

import { run, sleep } from './proc.js';

// iperf3 (Debian package) from wherever a benchmark needs an end: the host
// (an empty prefix), a runtime's node namespace (its enterArgv()), or a pod's
// network namespace (enterArgv() + nsenter --net=PATH). One TCP stream, the
// client sending; the result is what the server received.

/** The server's end. */
export interface IperfServer {
  /** argv before `iperf3 …`: [] on the host. */
  prefix: readonly string[];
  /** The address and port the client connects to. */
  host: string;
  port: number;
  /** The port the server listens on, where the client's is forwarded to it (default: `port`). */
  listenPort?: number;
  /** The address the server binds (all of its namespace's when not given). */
  bind?: string;
}

export interface IperfResult {
  gbps: number;
  retransmits: number | undefined;
}

const iperf3 = 'iperf3';

function argv(prefix: readonly string[], args: readonly string[]): [string, string[]] {
  const all = [...prefix, iperf3, ...args];
  return [all[0]!, all.slice(1)];
}

/** Starts a one-off server (`-s -1`), resolved once it listens; `done` resolves when it exits. */
async function server(end: IperfServer): Promise<{ done: Promise<void>; kill: () => void }> {
  const [file, args] = argv(end.prefix, ['-s', '-1', '--forceflush', '-p', String(end.listenPort ?? end.port), ...(end.bind ? ['-B', end.bind] : [])]);
  const child = spawn(file, args, { stdio: ['ignore', 'pipe', 'pipe'] });
  let out = '';
  child.stdout.on('data', (d: Buffer) => (out += d.toString()));
  child.stderr.on('data', (d: Buffer) => (out += d.toString()));
  let exited = false;
  const done = new Promise<void>((resolve) => child.on('close', () => ((exited = true), resolve())));
  const deadline = Date.now() + 10000;
  while (!out.includes('Server listening')) {
    if (exited || Date.now() > deadline) {
      child.kill('SIGKILL');
      throw new Error(`iperf3 server (${[file, ...args].join(' ')}) did not start listening:\n${out}`);
    }
    await sleep(20);
  }
  return { done, kill: () => void child.kill('SIGKILL') };
}

/** One measurement: a server at `to`, a client from `from` sending for `seconds` (after 1 s not counted). */
export async function iperf(from: readonly string[], to: IperfServer, seconds: number): Promise<IperfResult> {
  const s = await server(to);
  try {
    const [file, args] = argv(from, ['-c', to.host, '-p', String(to.port), '-t', String(seconds), '-O', '1', '-J']);
    const r = await run(file, args, { timeoutMs: (seconds + 20) * 1000 });
    const j = JSON.parse(r.stdout || '{}') as { error?: string; end?: { sum_received?: { bits_per_second: number }; sum_sent?: { retransmits?: number } } };
    if (r.code !== 0 || j.error || !j.end?.sum_received) throw new Error(`iperf3 ${args.join(' ')} failed (${r.code ?? r.signal}): ${j.error ?? ''}${r.stderr}`);
    await Promise.race([s.done, sleep(3000)]);
    return { gbps: j.end.sum_received.bits_per_second / 1e9, retransmits: j.end.sum_sent?.retransmits };
  } finally {
    s.kill();
  }
}

/** A TCP port free on the host's `host` now (bound and released: a later bind may still lose a race). */
export function freePort(host: string): Promise<number> {
  return new Promise((resolve, reject) => {
    const srv = createServer();
    srv.once('error', reject);
    srv.listen(0, host, () => {
      const a = srv.address();
      srv.close(() => (typeof a === 'object' && a ? resolve(a.port) : reject(new Error('no port'))));
    });
  });
}
