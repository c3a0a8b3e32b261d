import { realpathSync } from 'node:fs';
import * as http from 'node:http';
import * as https from 'node:https';
import { connect, isIP } from 'node:net';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';

import protobuf from 'protobufjs/minimal.js';

import type { NetProbeSpec, ProbeResult, ProbeReply, ProbeRequest } from './prober_net.js';

// The network probes (httpGet, tcpSocket, grpc), made the way kubelet's
// pkg/probe/{http,tcp,grpc} make them. Pod IPs exist only inside the node
// network namespace, so this file is also the probe worker: one long-lived
// node.js process started there (prober_net.ts enters it) that answers
// JSON-line requests on stdin with JSON-line outcomes on stdout. It imports
// nothing of the agent but types, so it starts fast and stays small; grpc-js
// is loaded on the first grpc probe only.

/** kubelet reads at most this much of a response body (pkg/probe/http maxRespBodyLength). */
export const maxBodyBytes = 10 * 1024;
/** Go's http.Client default: the 10th redirect is refused ("stopped after 10 redirects"). */
const maxRequests = 10;

/** Runs one network probe; never rejects, and answers within `timeoutMs` (give or take a timer tick). */
export async function probeOnce(r: Omit<ProbeRequest, 'id'>): Promise<ProbeResult> {
  // Loading grpc-js takes about a second on a small VM: not the container's
  // time, so it is not counted against the first grpc probe's timeout.
  if (r.spec.kind === 'grpc') await loadGrpc();
  const abort = new AbortController();
  let timer: NodeJS.Timeout | undefined;
  const timedOut = new Promise<ProbeResult>((resolve) => {
    timer = setTimeout(() => {
      abort.abort();
      resolve({ result: 'failure', output: timeoutOutput(r) });
    }, r.timeoutMs);
  });
  try {
    return await Promise.race([run(r, abort.signal), timedOut]);
  } catch (e: unknown) {
    return { result: 'failure', output: e instanceof Error ? e.message : String(e) };
  } finally {
    clearTimeout(timer);
    abort.abort();
  }
}

function run(r: Omit<ProbeRequest, 'id'>, signal: AbortSignal): Promise<ProbeResult> {
  switch (r.spec.kind) {
    case 'httpGet':
      return httpProbe(r.spec, r.podIP, r.userAgent, signal);
    case 'tcpSocket':
      return tcpProbe(r.spec.host || r.podIP, r.spec.port, signal);
    case 'grpc':
      return grpcProbe(r.podIP, r.spec.port, r.spec.service ?? '', r.userAgent, r.timeoutMs);
  }
}

// kubelet's texts: Go's client errors say "context deadline exceeded", its grpc
// prober "timeout: health rpc did not complete within 1s"; every kind here starts
// with "timeout:" so a reader (and an Event) tells a slow container from a refusal.
function timeoutOutput(r: Omit<ProbeRequest, 'id'>): string {
  const within = `within ${goDuration(r.timeoutMs)}`;
  switch (r.spec.kind) {
    case 'httpGet':
      return `timeout: Get "${probeUrl(r.spec.scheme, r.spec.host || r.podIP, r.spec.port, r.spec.path).href}" did not complete ${within}`;
    case 'tcpSocket':
      return `timeout: dial tcp ${joinHostPort(r.spec.host || r.podIP, r.spec.port)} did not complete ${within}`;
    case 'grpc':
      return `timeout: health rpc did not complete ${within}`;
  }
}

/** Go's time.Duration.String for whole milliseconds: 500ms, 1s, 1.5s. */
export function goDuration(ms: number): string {
  return ms < 1000 ? `${ms}ms` : `${ms / 1000}s`;
}

export function joinHostPort(host: string, port: number): string {
  return isIP(host) === 6 ? `[${host}]:${port}` : `${host}:${port}`;
}

/**
 * The probe URL as kubelet forms it: the path parsed as a URL reference (so a
 * query string stays one), then scheme, host and port put in from the probe.
 */
export function probeUrl(scheme: 'HTTP' | 'HTTPS', host: string, port: number, path: string): URL {
  const base = `${scheme.toLowerCase()}://${joinHostPort(host, port)}`;
  let u: URL;
  try {
    u = new URL(path || '/', `${base}/`);
  } catch {
    u = new URL(`${base}/`);
    u.pathname = path;
  }
  // A path like "//elsewhere/x" must not change the host the probe goes to.
  const b = new URL(base);
  u.protocol = b.protocol;
  u.host = b.host;
  return u;
}

interface RequestHeaders {
  headers: Record<string, string[]>;
  /** The Host header override (httpGet.httpHeaders "Host"), sent instead of the URL's. */
  host: string | undefined;
}

/**
 * The probe's headers as kubelet sends them: the container's own, then
 * `User-Agent: kube-probe/<major.minor>` and `Accept: *\/*` unless it set them;
 * an Accept set to "" is dropped, and a Host header replaces the URL's host.
 */
export function requestHeaders(own: ReadonlyArray<{ name: string; value: string }>, userAgent: string): RequestHeaders {
  const headers: Record<string, string[]> = {};
  // Header names are case-insensitive; Go's http.Header folds them, so do we.
  for (const h of own) (headers[h.name.toLowerCase()] ??= []).push(h.value);
  const hostValues = headers.host;
  delete headers.host;
  if (!headers['user-agent']) headers['user-agent'] = [userAgent];
  else if (headers['user-agent'][0] === '') delete headers['user-agent'];
  if (!headers.accept) headers.accept = ['*/*'];
  else if (headers.accept[0] === '') delete headers.accept;
  const host = hostValues?.[0];
  return { headers, host: host === '' ? undefined : host };
}

const redirectCodes = new Set([301, 302, 303, 307, 308]);

async function httpProbe(spec: Extract<NetProbeSpec, { kind: 'httpGet' }>, podIP: string, userAgent: string, signal: AbortSignal): Promise<ProbeResult> {
  const first = probeUrl(spec.scheme, spec.host || podIP, spec.port, spec.path);
  const { headers, host } = requestHeaders(spec.httpHeaders, userAgent);
  let url = first;
  let hostOverride = host;
  for (let requests = 1; ; requests++) {
    const res = await get(url, headers, hostOverride, signal);
    const location = res.headers.location;
    if (redirectCodes.has(res.statusCode ?? 0) && location !== undefined) {
      let next: URL;
      try {
        next = new URL(location, url);
      } catch {
        res.destroy();
        return { result: 'failure', output: `Get "${url.href}": failed to parse Location header "${location}"` };
      }
      // kubelet follows redirects only to the host it probed; elsewhere it stops
      // and takes the redirect itself as the answer (a success with a warning).
      if (next.hostname === first.hostname) {
        res.destroy();
        if (requests >= maxRequests) return { result: 'failure', output: `Get "${next.href}": stopped after ${maxRequests} redirects` };
        // Go keeps a custom Host only through a relative Location.
        const relative = !/^[a-z][a-z0-9+.-]*:/i.test(location) && !location.startsWith('//');
        if (!relative) hostOverride = undefined;
        url = next;
        continue;
      }
    }
    const body = await readAtMost(res, maxBodyBytes, signal);
    const code = res.statusCode ?? 0;
    if (code >= 200 && code < 400) {
      if (code >= 300) return { result: 'success', output: `Probe terminated redirects, Response body: ${body}`, warning: true };
      return { result: 'success', output: body };
    }
    return { result: 'failure', output: `HTTP probe failed with statuscode: ${code}` };
  }
}

function get(url: URL, headers: Record<string, string[]>, host: string | undefined, signal: AbortSignal): Promise<http.IncomingMessage> {
  return new Promise((resolve, reject) => {
    const all: Record<string, string | string[]> = host === undefined ? { ...headers } : { ...headers, host };
    const failed = (e: Error): void => reject(new Error(`Get "${url.href}": ${goError(e, url)}`));
    let req: http.ClientRequest;
    try {
      // agent: false is kubelet's DisableKeepAlives: one connection per probe,
      // closed after it, so an idle pod keeps no socket of ours open.
      const opts: https.RequestOptions = { method: 'GET', headers: all, agent: false, signal, rejectUnauthorized: false };
      req = url.protocol === 'https:' ? https.request(url, opts, resolve) : http.request(url, opts, resolve);
    } catch (e: unknown) {
      // Invalid header names or values are refused before anything is sent.
      failed(e instanceof Error ? e : new Error(String(e)));
      return;
    }
    req.on('error', failed);
    req.end();
  });
}

function readAtMost(res: http.IncomingMessage, limit: number, signal: AbortSignal): Promise<string> {
  return new Promise((resolve) => {
    const chunks: Buffer[] = [];
    let size = 0;
    const done = (): void => {
      signal.removeEventListener('abort', done);
      res.destroy();
      resolve(Buffer.concat(chunks).subarray(0, limit).toString('utf8'));
    };
    res.on('data', (d: Buffer) => {
      chunks.push(d);
      size += d.length;
      // kubelet stops reading at the limit and closes the connection: the
      // status line alone decides the outcome.
      if (size >= limit) done();
    });
    res.once('end', done);
    // A body cut short still leaves the status code to judge by.
    res.once('error', done);
    res.once('aborted', done);
    signal.addEventListener('abort', done, { once: true });
  });
}

function tcpProbe(host: string, port: number, signal: AbortSignal): Promise<ProbeResult> {
  return new Promise((resolve) => {
    const addr = joinHostPort(host, port);
    const sock = connect({ host, port });
    const onAbort = (): void => void sock.destroy();
    signal.addEventListener('abort', onAbort, { once: true });
    sock.once('connect', () => {
      signal.removeEventListener('abort', onAbort);
      sock.destroy();
      resolve({ result: 'success', output: '' });
    });
    sock.once('error', (e: Error) => {
      signal.removeEventListener('abort', onAbort);
      resolve({ result: 'failure', output: `dial tcp ${addr}: ${goError(e, undefined)}` });
    });
  });
}

// Go's wording for the errors a probe meets, so outputs read like kubelet's
// ("dial tcp 10.88.0.5:81: connect: connection refused").
function goError(e: Error, url: URL | undefined): string {
  const code = (e as NodeJS.ErrnoException).code;
  const dial = (what: string): string => {
    const err = e as NodeJS.ErrnoException & { address?: string; port?: number };
    const to = err.address !== undefined && err.port !== undefined ? joinHostPort(err.address, err.port) : url?.host;
    return url === undefined ? what : `dial tcp ${to}: ${what}`;
  };
  switch (code) {
    case 'ECONNREFUSED':
      return dial('connect: connection refused');
    case 'EHOSTUNREACH':
      return dial('connect: no route to host');
    case 'ENETUNREACH':
      return dial('connect: network is unreachable');
    case 'ECONNRESET':
      return 'read: connection reset by peer';
    case 'ENOTFOUND':
      return `lookup ${(e as { hostname?: string }).hostname ?? url?.hostname ?? ''}: no such host`;
    default:
      return e.message;
  }
}

// grpc.health.v1: HealthCheckRequest { string service = 1; }
// HealthCheckResponse { ServingStatus status = 1; } — small enough to encode here.
export const servingStatus = ['UNKNOWN', 'SERVING', 'NOT_SERVING', 'SERVICE_UNKNOWN'] as const;

export function encodeHealthCheckRequest(service: string): Buffer {
  const w = protobuf.Writer.create();
  if (service !== '') w.uint32((1 << 3) | 2).string(service);
  return Buffer.from(w.finish());
}

/** The status name, or the number for a value this version does not know. */
export function decodeHealthCheckResponse(b: Buffer): string {
  const r = protobuf.Reader.create(b);
  let status = 0;
  while (r.pos < r.len) {
    const tag = r.uint32();
    if (tag >>> 3 === 1 && (tag & 7) === 0) status = r.int32();
    else r.skipType(tag & 7);
  }
  return servingStatus[status] ?? String(status);
}

let grpcModule: Promise<typeof import('@grpc/grpc-js')> | undefined;
const loadGrpc = (): Promise<typeof import('@grpc/grpc-js')> => (grpcModule ??= import('@grpc/grpc-js'));

async function grpcProbe(host: string, port: number, service: string, userAgent: string, timeoutMs: number): Promise<ProbeResult> {
  const grpc = await loadGrpc();
  const addr = joinHostPort(host, port);
  // A channel per probe, as kubelet dials per probe: no connection is held
  // between probes and a restarted container is reached afresh.
  const client = new grpc.Client(addr, grpc.credentials.createInsecure(), { 'grpc.primary_user_agent': userAgent });
  try {
    const status = await new Promise<string>((resolve, reject) =>
      client.makeUnaryRequest(
        '/grpc.health.v1.Health/Check',
        (s: string) => encodeHealthCheckRequest(s),
        decodeHealthCheckResponse,
        service,
        new grpc.Metadata(),
        { deadline: Date.now() + timeoutMs },
        (err, res) => (err ? reject(err) : resolve(res ?? 'UNKNOWN')),
      ),
    );
    if (status !== 'SERVING') return { result: 'failure', output: `service unhealthy (responded with "${status}")` };
    return { result: 'success', output: 'service healthy' };
  } catch (e: unknown) {
    const err = e as { code?: number; details?: string; message?: string };
    switch (err.code) {
      case grpc.status.UNIMPLEMENTED:
        return { result: 'failure', output: `error: this server does not implement the grpc health protocol (grpc.health.v1.Health): ${err.details ?? ''}` };
      case grpc.status.DEADLINE_EXCEEDED:
        return { result: 'failure', output: `timeout: health rpc did not complete within ${goDuration(timeoutMs)}` };
      case grpc.status.UNAVAILABLE:
        return { result: 'failure', output: `error: failed to connect service at "${addr}": ${err.details ?? err.message ?? ''}` };
      default:
        return { result: 'failure', output: `error: health rpc probe failed: ${err.message ?? String(e)}` };
    }
  } finally {
    client.close();
  }
}

/** The worker's loop: a request per stdin line, answered in any order; exits when stdin closes (the agent is gone). */
export function serve(input: NodeJS.ReadableStream, write: (line: string) => void): Promise<void> {
  const lines = createInterface({ input, crlfDelay: Infinity });
  const inFlight = new Set<Promise<void>>();
  lines.on('line', (line) => {
    let req: ProbeRequest;
    try {
      req = JSON.parse(line) as ProbeRequest;
    } catch {
      process.stderr.write(`probe worker: not a JSON request: ${line.slice(0, 200)}\n`);
      return;
    }
    const p = probeOnce(req).then((o) => write(JSON.stringify({ id: req.id, ...o } satisfies ProbeReply) + '\n'));
    inFlight.add(p);
    void p.finally(() => inFlight.delete(p));
  });
  return new Promise((resolve) => lines.once('close', () => void Promise.all(inFlight).then(() => resolve())));
}

function isMain(): boolean {
  const script = process.argv[1];
  if (script === undefined) return false;
  try {
    return realpathSync(script) === realpathSync(fileURLToPath(import.meta.url));
  } catch {
    return false;
  }
}

if (isMain()) {
  // Nothing of the agent's may keep this process alive once stdin is gone.
  void serve(process.stdin, (l) => process.stdout.write(l)).then(() => process.exit(0));
}
