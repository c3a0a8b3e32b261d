import type { IncomingMessage } from 'node:http';
import { connect as tcpConnect, type Socket } from 'node:net';
import type { Duplex } from 'node:stream';
import { connect as tlsConnect } from 'node:tls';

import type { CriClients } from '../../proto/client.js';
import type { Logger } from '../log/logger.js';
import { criCall, findContainer, KubeletApiError, podSandbox } from './kubelet_pods.js';

// /exec, /attach and /portForward as kubelet serves them with its default
// (redirect-container-streaming off): ask the runtime's CRI Exec, Attach or
// PortForward for a streaming URL, then proxy the client's upgrade to it —
// SPDY/3.1 or WebSocket, whichever the client asked for: its Upgrade,
// Connection, X-Stream-Protocol-Version and Sec-WebSocket-* headers go
// through as they are, and after that the bytes both ways. The runtime's
// streaming server listens on 127.0.0.1 inside the node namespace and
// rootlesskit forwards the same port on the host's loopback, so its URL is
// reachable from here as it is.

export type StreamKind = 'exec' | 'attach' | 'portForward';

/** kubelet's remote command query: streams as input/output/error/tty = 1 (what the API server sends), command repeated. */
export function streamOptions(q: URLSearchParams): { stdin: boolean; stdout: boolean; stderr: boolean; tty: boolean } {
  const on = (...names: string[]): boolean => names.some((n) => q.get(n) === '1' || q.get(n) === 'true');
  const o = { stdin: on('input', 'stdin'), stdout: on('output', 'stdout'), stderr: on('error', 'stderr'), tty: on('tty') };
  if (!o.stdin && !o.stdout && !o.stderr) throw new KubeletApiError(400, 'you must specify at least 1 of stdin, stdout, stderr');
  // A terminal has one output stream: kubelet drops stderr with tty.
  if (o.tty) o.stderr = false;
  return o;
}

export interface StreamTarget {
  namespace: string;
  pod: string;
  /** Not for portForward. */
  container?: string;
}

/** The runtime's streaming URL for this request (single use). */
export async function streamingUrl(cri: CriClients, kind: StreamKind, t: StreamTarget, q: URLSearchParams): Promise<string> {
  if (kind === 'portForward') {
    const s = await podSandbox(cri, t.namespace, t.pod);
    if (s.state !== 'SANDBOX_READY') throw new KubeletApiError(400, `pod "${t.pod}" in namespace "${t.namespace}" is not running`);
    // The ports come in the stream headers, as kubelet leaves them.
    return (await criCall<{ url: string }>(cri, 'runtime', 'PortForward', { podSandboxId: s.id, port: [] })).url;
  }
  const o = streamOptions(q);
  const c = await findContainer(cri, t.namespace, t.pod, t.container!);
  if (c.state !== 'CONTAINER_RUNNING') throw new KubeletApiError(400, `container "${t.container}" in pod "${t.pod}" is not running`);
  if (kind === 'exec') {
    const cmd = q.getAll('command');
    if (cmd.length === 0) throw new KubeletApiError(400, 'command: required (one command= per argument)');
    return (await criCall<{ url: string }>(cri, 'runtime', 'Exec', { containerId: c.id, cmd, ...o })).url;
  }
  return (await criCall<{ url: string }>(cri, 'runtime', 'Attach', { containerId: c.id, ...o })).url;
}

/** Headers not passed on: the hop's own, and the caller's credentials (the runtime's token is the URL). */
const dropped = new Set(['host', 'authorization', 'proxy-authorization', 'proxy-connection', 'keep-alive', 'te', 'trailer', 'transfer-encoding', 'content-length']);

/**
 * Proxies the upgrade `req` (whose socket is `client`, `head` its first bytes
 * past the headers) to `target`; from the target's answer on it is a byte
 * pipe both ways. Either side closing closes the other.
 */
export function proxyUpgrade(req: IncomingMessage, client: Duplex, head: Buffer, target: string, log: Logger): void {
  const u = new URL(target);
  const port = Number(u.port) || (u.protocol === 'https:' ? 443 : 80);
  const host = u.hostname.replace(/^\[|\]$/g, '');
  let answered = false;
  const upstream: Socket = u.protocol === 'https:' ? tlsConnect({ host, port, servername: host, rejectUnauthorized: false }) : tcpConnect({ host, port });
  const lines = [`${req.method ?? 'GET'} ${u.pathname}${u.search} HTTP/1.1`, `Host: ${u.host}`];
  for (let i = 0; i + 1 < req.rawHeaders.length; i += 2) {
    const name = req.rawHeaders[i]!;
    if (!dropped.has(name.toLowerCase())) lines.push(`${name}: ${req.rawHeaders[i + 1]!}`);
  }
  upstream.once(u.protocol === 'https:' ? 'secureConnect' : 'connect', () => {
    upstream.write(`${lines.join('\r\n')}\r\n\r\n`);
    if (head.length > 0) upstream.write(head);
    upstream.pipe(client);
    client.pipe(upstream);
  });
  upstream.once('data', () => (answered = true));
  upstream.on('error', (e: Error) => {
    log.warn('streaming proxy: the runtime streaming server failed', { error: e.message, target: `${u.host}${u.pathname.replace(/\/[^/]*$/, '/…')}` });
    if (!answered && client.writable) {
      const text = `error dialing the container runtime's streaming server: ${e.message}\n`;
      client.end(`HTTP/1.1 502 Bad Gateway\r\nContent-Type: text/plain\r\nContent-Length: ${Buffer.byteLength(text)}\r\nConnection: close\r\n\r\n${text}`);
    } else client.destroy();
  });
  client.on('error', () => upstream.destroy());
  upstream.on('close', () => client.destroy());
  client.on('close', () => upstream.destroy());
}
