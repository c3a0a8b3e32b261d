import { readFile } from 'node:fs/promises';
import { createServer, type Server } from 'node:https';
import type { IncomingMessage, ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import type { Duplex } from 'node:stream';
import type { TLSSocket } from 'node:tls';

import type { CriClients } from '../../proto/client.js';
import type { Logger } from '../log/logger.js';
import { authenticate, authorize, type ClusterAuth, credentialsOf, type UserInfo } from './kubelet_auth.js';
import { serveContainerLogs } from './kubelet_logs.js';
import { findContainer, KubeletApiError } from './kubelet_pods.js';
import { SummaryProvider } from './kubelet_stats.js';
import { proxyUpgrade, type StreamKind, streamingUrl, type StreamTarget } from './kubelet_stream_proxy.js';
import { servingCert } from './kubelet_tls.js';

export { type ClusterAuth, clusterAuth } from './kubelet_auth.js';

// The kubelet API (kubelet's :10250) of the node half: TLS, every request
// authenticated and authorized as kubelet_auth.ts says, then
//
//   GET  /healthz                                  ok
//   GET  /pods                                     the node's pods (PodList)
//   GET  /containerLogs/{ns}/{pod}/{container}     kubelet_logs.ts
//   GET|POST /exec/{ns}/{pod}[/{uid}]/{container}  kubelet_stream_proxy.ts
//   GET|POST /attach/{ns}/{pod}[/{uid}]/{container}
//   GET|POST /portForward/{ns}/{pod}[/{uid}]
//   POST /run/{ns}/{pod}[/{uid}]/{container}?cmd=  the command's output (ExecSync)
//   GET  /stats/summary                            kubelet_stats.ts
//   GET  /metrics, /metrics/cadvisor, /metrics/resource
//
// anything else 404. The runtime is reached only through its CRI client.

export interface MetricsText {
  contentType: string;
  body: string;
}

export interface KubeletServerOptions {
  host: string;
  port: number;
  /** No cert given: a self-signed one made once into pkiDir (kubelet.crt, kubelet.key) and reused. */
  tls: { certFile?: string; keyFile?: string; pkiDir: string };
  /** Callers with a client certificate it signed are authenticated (CN user, O groups). */
  clientCAFile?: string;
  /** TokenReview and SubjectAccessReview; undefined without a control plane (see kubelet_auth.ts). */
  auth?: ClusterAuth;
  /** kubelet's authentication.anonymous.enabled (default false: refused with 401). */
  anonymous: boolean;
  nodeName: string;
  cri: CriClients;
  /** The pods this node runs, as v1 Pod objects. */
  pods: () => object[];
  metrics: { node: () => Promise<MetricsText>; cadvisor: () => Promise<MetricsText>; resource: () => Promise<MetricsText> };
  log: Logger;
  /** Connections open at once, streams included; more are closed as they come (default defaultMaxConnections). */
  maxConnections?: number;
  /** How long a /run command may take (default 2 min, kubelet's runtimeRequestTimeout). */
  runTimeoutMs?: number;
}

/**
 * kubelet puts no cap on its server's connections; a node that holds one per
 * log follower, exec and port-forward, and a TLS handshake for each, needs
 * one. 1024 is far above what a node of 110 pods uses (the API server's own
 * calls come over a few connections each), and below the file descriptors a
 * process has by default.
 */
export const defaultMaxConnections = 1024;
const defaultRunTimeoutMs = 120000;
/** gRPC's DEADLINE_EXCEEDED (the node half keeps grpc-js out: prober_exec.ts does the same). */
const deadlineExceededCode = 4;

export interface KubeletServer {
  address: string;
  port: number;
  close(): Promise<void>;
}

type Route =
  | { kind: 'healthz' | 'pods' | 'summary' | 'metrics' | 'metrics/cadvisor' | 'metrics/resource' }
  | { kind: 'containerLogs'; ns: string; pod: string; container: string }
  | { kind: 'run'; ns: string; pod: string; container: string }
  | { kind: 'stream'; stream: StreamKind; target: StreamTarget };

const seg = '([^/]+)';

/** The route of `path` and the methods it takes; undefined: 404. */
export function routeOf(path: string): { route: Route; methods: string[] } | undefined {
  const d = (s: string): string => decodeURIComponent(s);
  const get = ['GET', 'HEAD'];
  switch (path) {
    case '/healthz':
      return { route: { kind: 'healthz' }, methods: get };
    case '/pods':
    case '/pods/':
      return { route: { kind: 'pods' }, methods: get };
    case '/stats/summary':
    case '/stats/summary/':
      return { route: { kind: 'summary' }, methods: get };
    case '/metrics':
    case '/metrics/cadvisor':
    case '/metrics/resource':
      return { route: { kind: path.slice(1) as 'metrics' }, methods: get };
  }
  let m = new RegExp(`^/containerLogs/${seg}/${seg}/${seg}$`).exec(path);
  if (m) return { route: { kind: 'containerLogs', ns: d(m[1]!), pod: d(m[2]!), container: d(m[3]!) }, methods: get };
  m = new RegExp(`^/(exec|attach)/${seg}/${seg}(?:/${seg})?/${seg}$`).exec(path);
  if (m) return { route: { kind: 'stream', stream: m[1] as StreamKind, target: { namespace: d(m[2]!), pod: d(m[3]!), container: d(m[5]!) } }, methods: ['GET', 'POST'] };
  m = new RegExp(`^/portForward/${seg}/${seg}(?:/${seg})?$`).exec(path);
  if (m) return { route: { kind: 'stream', stream: 'portForward', target: { namespace: d(m[1]!), pod: d(m[2]!) } }, methods: ['GET', 'POST'] };
  m = new RegExp(`^/run/${seg}/${seg}(?:/${seg})?/${seg}$`).exec(path);
  if (m) return { route: { kind: 'run', ns: d(m[1]!), pod: d(m[2]!), container: d(m[4]!) }, methods: ['POST'] };
  return undefined;
}

const statusText: Record<number, string> = { 400: 'Bad Request', 401: 'Unauthorized', 403: 'Forbidden', 404: 'Not Found', 405: 'Method Not Allowed', 500: 'Internal Server Error', 502: 'Bad Gateway', 503: 'Service Unavailable' };

export async function serveKubeletApi(o: KubeletServerOptions): Promise<KubeletServer> {
  const cert = await servingCert({ ...o.tls, nodeName: o.nodeName });
  if (cert.generated) o.log.info('made a self-signed serving certificate for the kubelet API', { file: cert.certFile });
  const ca = o.clientCAFile ? await readFile(o.clientCAFile) : undefined;
  if (!o.auth && !ca && !o.anonymous) o.log.warn('kubelet API: no client CA, no control plane and anonymous off: every request will be refused');
  const stats = new SummaryProvider({ cri: o.cri, nodeName: o.nodeName, rootDir: o.tls.pkiDir });
  const authn = { clientCA: ca !== undefined, ...(o.auth ? { auth: o.auth } : {}), anonymous: o.anonymous };

  /** Authenticated and authorized: the user; otherwise the refusal to send. */
  const admit = async (req: IncomingMessage, path: string): Promise<{ user: UserInfo } | { status: number; message: string }> => {
    const who = await authenticate(credentialsOf(req.socket as TLSSocket, req.headers.authorization), authn);
    if (!who.ok) {
      // Debug: anyone on the network can knock; a refusal is not news.
      o.log.debug('kubelet API: unauthenticated request refused', { path, reason: who.reason });
      return { status: 401, message: 'Unauthorized' };
    }
    const may = await authorize(who.user, req.method ?? 'GET', path, o.nodeName, o.auth);
    if (!may.allowed) {
      o.log.info('kubelet API: request refused', { path, message: may.message, reason: may.reason });
      return { status: may.status, message: may.message };
    }
    return { user: who.user };
  };

  const server: Server = createServer({
    cert: cert.cert,
    key: cert.key,
    ...(ca ? { ca, requestCert: true, rejectUnauthorized: false } : {}),
    minVersion: 'TLSv1.2',
  });

  const fail = (res: ServerResponse, e: unknown, path: string): void => {
    const status = e instanceof KubeletApiError ? e.status : 500;
    const message = (e as Error).message;
    if (status === 500) o.log.warn('kubelet API request failed', { path, error: message });
    if (res.headersSent) {
      res.destroy();
      return;
    }
    res.writeHead(status, { 'content-type': 'text/plain; charset=utf-8' }).end(`${message}\n`);
  };

  server.on('request', (req: IncomingMessage, res: ServerResponse) => {
    const url = new URL(req.url ?? '/', 'https://kubelet');
    const path = url.pathname;
    const abort = new AbortController();
    res.on('close', () => abort.abort());
    void (async () => {
      const r = routeOf(path);
      const who = await admit(req, path);
      if ('status' in who) {
        res.writeHead(who.status, { 'content-type': 'text/plain; charset=utf-8' }).end(`${who.message}\n`);
        return;
      }
      if (!r) throw new KubeletApiError(404, `404 page not found: ${path}`);
      if (!r.methods.includes(req.method ?? '')) throw new KubeletApiError(405, `${req.method} is not allowed on ${path}; use ${r.methods.join(' or ')}`);
      await handle(r.route, url, req, res, abort.signal);
    })().catch((e: unknown) => fail(res, e, path));
  });

  const handle = async (r: Route, url: URL, req: IncomingMessage, res: ServerResponse, signal: AbortSignal): Promise<void> => {
    const json = (v: unknown): void => {
      res.writeHead(200, { 'content-type': 'application/json' }).end(JSON.stringify(v));
    };
    const text = (m: MetricsText): void => {
      res.writeHead(200, { 'content-type': m.contentType }).end(req.method === 'HEAD' ? undefined : m.body);
    };
    switch (r.kind) {
      case 'healthz':
        res.writeHead(200, { 'content-type': 'text/plain; charset=utf-8' }).end('ok');
        return;
      case 'pods':
        json({ kind: 'PodList', apiVersion: 'v1', metadata: {}, items: o.pods() });
        return;
      case 'summary':
        json(await stats.summary());
        return;
      case 'metrics':
        text(await o.metrics.node());
        return;
      case 'metrics/cadvisor':
        text(await o.metrics.cadvisor());
        return;
      case 'metrics/resource':
        text(await o.metrics.resource());
        return;
      case 'containerLogs':
        await serveContainerLogs(o.cri, r.ns, r.pod, r.container, url.searchParams, res, signal);
        return;
      case 'run':
        await runCommand(o.cri, r, url.searchParams, res, signal, o.runTimeoutMs ?? defaultRunTimeoutMs);
        return;
      case 'stream':
        // Only an upgrade streams; a plain request learns how.
        throw new KubeletApiError(400, 'Upgrade request required: connect with SPDY/3.1 or a WebSocket');
    }
  };

  // Upgraded connections are no longer the HTTP server's: closing ends them here.
  const streams = new Set<Duplex>();
  server.on('upgrade', (req: IncomingMessage, socket: Duplex, head: Buffer) => {
    socket.on('error', () => socket.destroy());
    streams.add(socket);
    socket.on('close', () => streams.delete(socket));
    const url = new URL(req.url ?? '/', 'https://kubelet');
    const path = url.pathname;
    const refuse = (status: number, message: string): void => {
      const body = `${message}\n`;
      socket.end(`HTTP/1.1 ${status} ${statusText[status] ?? 'Error'}\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Length: ${Buffer.byteLength(body)}\r\nConnection: close\r\n\r\n${body}`);
    };
    void (async () => {
      const r = routeOf(path);
      const who = await admit(req, path);
      if ('status' in who) return refuse(who.status, who.message);
      if (!r || r.route.kind !== 'stream') return refuse(404, `404 page not found: ${path}`);
      if (!r.methods.includes(req.method ?? '')) return refuse(405, `${req.method} is not allowed on ${path}`);
      const target = await streamingUrl(o.cri, r.route.stream, r.route.target, url.searchParams);
      o.log.debug('kubelet API: streaming', { kind: r.route.stream, pod: `${r.route.target.namespace}/${r.route.target.pod}`, user: who.user.username });
      proxyUpgrade(req, socket, head, target, o.log);
    })().catch((e: unknown) => {
      const status = e instanceof KubeletApiError ? e.status : 500;
      if (status === 500) o.log.warn('kubelet API streaming request failed', { path, error: (e as Error).message });
      refuse(status, (e as Error).message);
    });
  });
  // Over the cap, net.Server closes a new connection at once (before TLS: no HTTP answer is possible).
  server.maxConnections = o.maxConnections ?? defaultMaxConnections;
  let lastDropLog = 0;
  let dropped = 0;
  server.on('drop', () => {
    dropped++;
    if (Date.now() - lastDropLog < 60000) return;
    lastDropLog = Date.now();
    o.log.warn('kubelet API: connection refused, at the connection cap', { maxConnections: server.maxConnections, refusedSoFar: dropped });
  });
  server.on('tlsClientError', (e: Error) => o.log.debug('kubelet API: TLS handshake failed', { error: e.message }));

  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(o.port, o.host, () => {
      server.off('error', reject);
      resolve();
    });
  });
  const a = server.address() as AddressInfo;
  o.log.info('kubelet API listening', { address: `https://${a.family === 'IPv6' ? `[${a.address}]` : a.address}:${a.port}` });
  return {
    address: a.address,
    port: a.port,
    close: () =>
      new Promise<void>((resolve) => {
        server.close(() => resolve());
        server.closeAllConnections();
        for (const s of streams) s.destroy();
      }),
  };
}

/**
 * /run: the command's output at once (CRI ExecSync), as kubelet's "run in
 * container". The command gets `timeoutMs` (ExecSync's timeout: the runtime
 * kills it then); a client that leaves first cancels the call, and the
 * runtime kills the command with it.
 */
async function runCommand(cri: CriClients, r: { ns: string; pod: string; container: string }, q: URLSearchParams, res: ServerResponse, signal: AbortSignal, timeoutMs: number): Promise<void> {
  const cmd = (q.get('cmd') ?? '').split(' ').filter((x) => x !== '');
  if (cmd.length === 0) throw new KubeletApiError(400, 'cmd: required (the command line, split at spaces)');
  const c = await findContainer(cri, r.ns, r.pod, r.container);
  if (signal.aborted) return;
  const timeout = Math.max(1, Math.ceil(timeoutMs / 1000));
  // undefined: the client left (the call was cancelled for it); nobody to answer.
  const out = await new Promise<{ stdout: Buffer; stderr: Buffer } | undefined>((resolve, reject) => {
    let call: { cancel(): void } | undefined;
    const cancel = (): void => call?.cancel();
    // The runtime's own timeout ends the command; the deadline (a little later) covers a runtime that does not answer.
    call = cri.runtime.ExecSync({ containerId: c.id, cmd, timeout }, { deadline: Date.now() + timeout * 1000 + 5000 }, (err, reply) => {
      signal.removeEventListener('abort', cancel);
      if (signal.aborted) return resolve(undefined);
      if (err || !reply) {
        const code = (err as { code?: number } | null)?.code;
        if (code === deadlineExceededCode) reject(new KubeletApiError(500, `the command did not finish within ${timeout} s`));
        else reject(Object.assign(new Error(`ExecSync: ${err?.message ?? 'no answer'}`), { code }));
        return;
      }
      resolve(reply);
    });
    signal.addEventListener('abort', cancel, { once: true });
  });
  if (!out) return;
  res.writeHead(200, { 'content-type': 'text/plain; charset=utf-8' }).end(Buffer.concat([out.stdout, out.stderr]));
}
