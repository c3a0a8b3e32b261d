import { spawn, type ChildProcess } from 'node:child_process';
import type { Socket } from 'node:net';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';

import { deadlineExceeded, invalidArgument, unavailable } from '../errdefs/errors.js';
import type { Logger } from '../log/logger.js';

// The network probes of a container (httpGet, tcpSocket, grpc) as kubelet
// makes them: from the node's network, which for usernode is the node
// namespace, the only place pod IPs route. A pod worker probes every container
// every periodSeconds, so no process is spawned per probe: one long-lived
// probe worker (probe_worker.ts) is entered into the node namespace and takes
// requests as JSON lines. If it dies, the requests it held fail at once and the
// next probe starts a new one (with a back-off when it keeps dying unused).
//
// Contract of every Prober here, after kubelet's prober: `run` resolves with
// the probe's outcome (success or failure, and the output kubelet would put in
// an Event); it rejects only when the prober itself could not probe (worker
// gone, runtime unreachable) — kubelet's probe error, whose result the pod
// worker throws away instead of counting it as a failure.

import type { Prober, ProbeResult, ProbeSpec, ProbeTarget } from './prober.js';

export type { HttpHeader, Prober, ProbeResult, ProbeSpec, ProbeTarget } from './prober.js';

export type NetProbeSpec = Exclude<ProbeSpec, { kind: 'exec' }>;

/** One line on the probe worker's stdin. */
export interface ProbeRequest {
  id: number;
  spec: NetProbeSpec;
  podIP: string;
  timeoutMs: number;
  userAgent: string;
}

/** One line on the probe worker's stdout, answering the request with the same id. */
export type ProbeReply = { id: number } & ProbeResult;

/** kubelet's User-Agent for probes: kube-probe/<major>.<minor> of the Kubernetes release it implements. */
export const probeUserAgent = 'kube-probe/1.37';

export const probeWorkerScript = fileURLToPath(new URL('./probe_worker.js', import.meta.url));

export interface NetProberOptions {
  /** Wraps an argv so that it runs inside the node namespace (enterArgv); identity in tests. */
  enter: (argv: string[]) => string[];
  log: Logger;
  userAgent?: string;
  /** How long past a probe's own timeout the worker may take to answer before it is deemed wedged. */
  graceMs?: number;
}

const firstBackoffMs = 500;
const maxBackoffMs = 30000;

export interface NetProber extends Prober {
  /** The live worker's process id, if one runs. */
  readonly workerPid: number | undefined;
  close(): Promise<void>;
}

export function netProber(o: NetProberOptions): NetProber {
  return new WorkerNetProber(o);
}

class WorkerNetProber implements NetProber {
  private worker: ProbeWorker | undefined;
  private nextId = 1;
  private backoffMs = 0;
  private notBefore = 0;
  private lastExit = '';
  private closed = false;

  constructor(private readonly o: NetProberOptions) {}

  async run(p: ProbeSpec, t: ProbeTarget): Promise<ProbeResult> {
    if (p.kind === 'exec') throw invalidArgument('exec probes run in the container through the CRI (execProber), not from the node network', { field: 'exec' });
    checkNetProbe(p, t);
    if (this.closed) throw unavailable('the network prober is closed');
    const w = this.ensureWorker();
    return w.request({ id: this.nextId++, spec: p, podIP: t.podIP, timeoutMs: t.timeoutMs, userAgent: this.o.userAgent ?? probeUserAgent }, t.timeoutMs + (this.o.graceMs ?? 5000));
  }

  /** The live worker's process id, if one runs (for tests and the log). */
  get workerPid(): number | undefined {
    return this.worker?.pid;
  }

  private ensureWorker(): ProbeWorker {
    if (this.worker) return this.worker;
    if (Date.now() < this.notBefore) throw unavailable(`the probe worker is restarting (in ${this.notBefore - Date.now()} ms) after: ${this.lastExit}`);
    const w = new ProbeWorker(this.o.enter([process.execPath, probeWorkerScript]), this.o.log, (reason, answered) => {
      if (this.worker === w) this.worker = undefined;
      this.lastExit = reason;
      if (this.closed) return;
      // A worker that answered was healthy: restart at once. One that died
      // before answering anything (nsenter refused, the namespace is gone)
      // would die again: back off so a pod worker's probes do not fork-storm.
      this.backoffMs = answered ? 0 : Math.min(maxBackoffMs, this.backoffMs === 0 ? firstBackoffMs : this.backoffMs * 2);
      this.notBefore = Date.now() + this.backoffMs;
      this.o.log.warn('the probe worker exited; the probes it held failed', { reason, restartInMs: this.backoffMs });
    });
    this.worker = w;
    return w;
  }

  async close(): Promise<void> {
    this.closed = true;
    await this.worker?.stop();
  }
}

function checkNetProbe(p: NetProbeSpec, t: ProbeTarget): void {
  const port = (field: string, v: number): void => {
    if (!Number.isInteger(v) || v < 1 || v > 65535) throw invalidArgument(`${field} must be a port number between 1 and 65535, got ${v}`, { field });
  };
  if (!Number.isInteger(t.timeoutMs) || t.timeoutMs < 1) throw invalidArgument(`timeoutMs must be a positive whole number of milliseconds, got ${t.timeoutMs}`, { field: 'timeoutSeconds' });
  switch (p.kind) {
    case 'httpGet':
      port('httpGet.port', p.port);
      if (p.scheme !== 'HTTP' && p.scheme !== 'HTTPS') throw invalidArgument(`httpGet.scheme must be HTTP or HTTPS, got ${String(p.scheme)}`, { field: 'httpGet.scheme' });
      for (const [i, h] of p.httpHeaders.entries()) {
        if (!/^[!#$%&'*+.^_`|~0-9A-Za-z-]+$/.test(h.name)) throw invalidArgument(`httpGet.httpHeaders[${i}].name must be an HTTP header name, got "${h.name}"`, { field: `httpGet.httpHeaders[${i}].name` });
      }
      break;
    case 'tcpSocket':
      port('tcpSocket.port', p.port);
      break;
    case 'grpc':
      port('grpc.port', p.port);
      break;
  }
  const host = p.kind === 'grpc' ? undefined : p.host;
  if (!host && !t.podIP) throw invalidArgument(`a ${p.kind} probe needs the pod's IP, and the pod has none yet`, { field: 'status.podIP' });
}

interface Pending {
  resolve: (o: ProbeResult) => void;
  reject: (e: Error) => void;
  timer: NodeJS.Timeout;
}

/** One probe worker process and the requests it holds. */
class ProbeWorker {
  private readonly child: ChildProcess;
  private readonly pending = new Map<number, Pending>();
  private readonly stderrTail: string[] = [];
  private answered = false;
  private gone = false;
  private readonly exited: Promise<void>;

  constructor(
    argv: string[],
    private readonly log: Logger,
    onExit: (reason: string, answered: boolean) => void,
  ) {
    const [file, ...args] = argv;
    this.child = spawn(file!, args, { stdio: ['pipe', 'pipe', 'pipe'] });
    log.debug('started the probe worker', { pid: this.child.pid, command: argv.join(' ') });
    let resolveExited: () => void = () => {};
    this.exited = new Promise((r) => (resolveExited = r));
    const finish = (reason: string): void => {
      if (this.gone) return;
      this.gone = true;
      const tail = this.stderrTail.join('; ');
      const why = tail ? `${reason}: ${tail}` : reason;
      for (const [id, p] of this.pending) {
        clearTimeout(p.timer);
        this.pending.delete(id);
        p.reject(unavailable(`the probe worker ${why}`));
      }
      onExit(why, this.answered);
      resolveExited();
    };
    this.child.once('error', (e) => finish(`could not start: ${e.message}`));
    this.child.once('exit', (code, signal) => finish(signal ? `was killed by ${signal}` : `exited with code ${code}`));
    // A write to a worker that has just died: its exit fails the requests.
    this.child.stdin!.on('error', () => {});
    createInterface({ input: this.child.stdout!, crlfDelay: Infinity }).on('line', (line) => this.answer(line));
    createInterface({ input: this.child.stderr!, crlfDelay: Infinity }).on('line', (line) => {
      this.stderrTail.push(line);
      if (this.stderrTail.length > 5) this.stderrTail.shift();
      log.warn('probe worker', { stderr: line });
    });
    this.setActive();
  }

  get pid(): number | undefined {
    return this.gone ? undefined : this.child.pid;
  }

  request(req: ProbeRequest, answerWithinMs: number): Promise<ProbeResult> {
    if (this.gone) return Promise.reject(unavailable('the probe worker is gone'));
    return new Promise<ProbeResult>((resolve, reject) => {
      const timer = setTimeout(() => {
        this.pending.delete(req.id);
        reject(deadlineExceeded(`the probe worker did not answer within ${answerWithinMs} ms; restarting it`));
        // It outlived a timeout it enforces itself: it is wedged.
        this.child.kill('SIGKILL');
      }, answerWithinMs);
      this.pending.set(req.id, { resolve, reject, timer });
      this.setActive();
      this.child.stdin!.write(JSON.stringify(req) + '\n');
    });
  }

  private answer(line: string): void {
    let reply: ProbeReply;
    try {
      reply = JSON.parse(line) as ProbeReply;
    } catch {
      this.log.warn('probe worker wrote a line that is not a reply', { line: line.slice(0, 200) });
      return;
    }
    const p = this.pending.get(reply.id);
    if (!p) return;
    this.pending.delete(reply.id);
    clearTimeout(p.timer);
    this.answered = true;
    this.setActive();
    const o: ProbeResult = { result: reply.result, output: reply.output };
    if (reply.warning) o.warning = true;
    p.resolve(o);
  }

  // An idle worker must not keep the agent's event loop (or a test) alive;
  // one with probes in flight must.
  private setActive(): void {
    const active = this.pending.size > 0;
    for (const s of [this.child.stdin, this.child.stdout, this.child.stderr] as unknown as Array<Socket | null>) {
      if (active) s?.ref();
      else s?.unref();
    }
    if (active) this.child.ref();
    else this.child.unref();
  }

  /** Closes its stdin (it finishes what it holds and exits); kills it if it lingers. */
  async stop(timeoutMs = 2000): Promise<void> {
    if (this.gone) return;
    this.child.stdin!.end();
    const timer = setTimeout(() => this.child.kill('SIGKILL'), timeoutMs);
    await this.exited;
    clearTimeout(timer);
  }
}

/** Routes each probe to the prober for its kind: exec through the CRI, the others from the node network. */
export function combinedProber(o: { exec: Prober; net: Prober }): Prober {
  return {
    run: (p, t) => (p.kind === 'exec' ? o.exec : o.net).run(p, t),
    close: async () => {
      await Promise.all([o.exec.close?.(), o.net.close?.()]);
    },
  };
}
