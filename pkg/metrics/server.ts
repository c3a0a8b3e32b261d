import { chmod, rm } from 'node:fs/promises';
import { createServer, request, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';

import type { Registry } from 'prom-client';

// Prometheus exposition over HTTP. The node half serves it on a host address
// (default 127.0.0.1:10255, loopback only, no auth, like kubelet's read-only
// port) with the runtime half's metrics appended, which the runtime half
// serves on a unix socket in the agent's private runtime folder.

export interface MetricsServer {
  /** "host:port" or the socket path. */
  address: string;
  close(): Promise<void>;
}

export async function serveMetrics(
  listen: { host: string; port: number } | { socket: string },
  registry: Registry,
  extra?: () => Promise<string>,
): Promise<MetricsServer> {
  const server: Server = createServer((req, res) => {
    const path = (req.url ?? '/').split('?')[0];
    if (req.method !== 'GET' || path !== '/metrics') {
      res.writeHead(404, { 'content-type': 'text/plain' }).end('not found: try /metrics\n');
      return;
    }
    void (async () => {
      try {
        let body = await registry.metrics();
        if (extra) body += await extra().catch(() => '');
        res.writeHead(200, { 'content-type': registry.contentType }).end(body);
      } catch (e: unknown) {
        res.writeHead(500, { 'content-type': 'text/plain' }).end(`${(e as Error).message}\n`);
      }
    })();
  });
  if ('socket' in listen) await rm(listen.socket, { force: true });
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    if ('socket' in listen) server.listen(listen.socket, resolve);
    else server.listen(listen.port, listen.host, resolve);
  });
  if ('socket' in listen) await chmod(listen.socket, 0o600);
  const a = server.address();
  const address = typeof a === 'string' ? a : `${(a as AddressInfo).address}:${(a as AddressInfo).port}`;
  return {
    address,
    close: () =>
      new Promise<void>((resolve) => {
        server.closeAllConnections();
        server.close(() => resolve());
      }),
  };
}

/** The exposition a metrics server on a unix socket returns; '' when it does not answer. */
export function scrapeSocket(socket: string, timeoutMs = 2000): Promise<string> {
  return new Promise((resolve) => {
    const req = request({ socketPath: socket, path: '/metrics', timeout: timeoutMs }, (res) => {
      let body = '';
      res.setEncoding('utf8');
      res.on('data', (c: string) => (body += c));
      res.on('end', () => resolve(res.statusCode === 200 ? body : ''));
    });
    req.on('timeout', () => req.destroy());
    req.on('error', () => resolve(''));
    req.end();
  });
}
