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
  /**
   * Serves another exposition at `path` (the node half adds /metrics/cadvisor
   * once it has a CRI client, as kubelet's read-only port serves it); a
   * scrape of it before then is a 404.
   */
  route(path: string, render: () => Promise<string>): void;
  close(): Promise<void>;
}

export async function serveMetrics(
  listen: { host: string; port: number } | { socket: string },
  registry: Registry,
  extra?: () => Promise<string>,
): Promise<MetricsServer> {
  const routes = new Map<string, () => Promise<string>>([
    [
      '/metrics',
      async () => {
        const body = await registry.metrics();
        return extra ? body + (await extra().catch(() => '')) : body;
      },
    ],
  ]);
  const server: Server = createServer((req, res) => {
    const path = (req.url ?? '/').split('?')[0] ?? '/';
    const render = routes.get(path);
    if (req.method !== 'GET' || !render) {
      res.writeHead(404, { 'content-type': 'text/plain' }).end(`not found: try ${[...routes.keys()].join(' or ')}\n`);
      return;
    }
    void (async () => {
      try {
        const body = await render();
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
    route: (path, render) => void routes.set(path, render),
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
      res.on('error', () => resolve(''));
    });
    req.on('timeout', () => req.destroy());
    req.on('error', () => resolve(''));
    req.end();
  });
}

/**
 * An exposition that is costly to make (one CRI call over every pod), shared
 * by the scrapes that ask for it together: at most one is being made, one
 * made within maxAgeMs is served again, and a scrape waits at most timeoutMs
 * before it gets the last one made (or fails, when there is none yet) while
 * the slow one finishes in the background. A scrape never adds load on the
 * runtime during churn beyond one call per maxAgeMs.
 */
export function sharedExposition(render: () => Promise<string>, o: { maxAgeMs?: number; timeoutMs?: number; now?: () => number } = {}): () => Promise<string> {
  const maxAgeMs = o.maxAgeMs ?? 1000;
  const timeoutMs = o.timeoutMs ?? 5000;
  const now = o.now ?? Date.now;
  let last: { body: string; at: number } | undefined;
  let making: Promise<string> | undefined;
  return async () => {
    if (last && now() - last.at < maxAgeMs) return last.body;
    making ??= render()
      .then((body) => {
        last = { body, at: now() };
        return body;
      })
      .finally(() => (making = undefined));
    const pending = making;
    let timer: NodeJS.Timeout | undefined;
    const late = new Promise<'late'>((resolve) => {
      timer = setTimeout(() => resolve('late'), timeoutMs);
    });
    try {
      const got = await Promise.race([pending, late]);
      if (got !== 'late') return got;
      if (last) return last.body;
      throw new Error(`the exposition took longer than ${timeoutMs} ms`);
    } finally {
      clearTimeout(timer);
    }
  };
}
