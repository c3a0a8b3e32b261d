import { createServer, type IncomingMessage, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import type { Duplex } from 'node:stream';

import { createWebSocketStream, WebSocketServer } from 'ws';

import { toWire } from '../errdefs/codes.js';
import { messageOf } from '../errdefs/errors.js';
import type { Logger } from '../log/logger.js';

import { type DialPort, portForwardProtocol, servePortForward } from './portforward.js';
import { negotiate, remoteCommandVersions, type RemoteCommandSession, type RemoteCommandVersion, type StreamOptions } from './remotecommand.js';
import { SpdySession } from './spdy.js';
import { spdySession } from './spdy_remotecommand.js';
import { TokenCache } from './tokens.js';
import { websocketSession } from './websocket.js';

// The streaming server of the CRI (what Exec, Attach and PortForward hand
// out URLs of): one HTTP server, each URL /exec|attach|portforward/<token>
// with a single-use token that stands for the request and expires after a
// minute. A connection upgrades to SPDY/3.1 (X-Stream-Protocol-Version
// negotiated) or to a WebSocket (the channel subprotocols; port-forward as
// SPDY tunnelled in it); anything else gets its HTTP error and no side effect.

export interface ExecRequest extends StreamOptions {
  containerId: string;
  cmd: string[];
}
export interface AttachRequest extends StreamOptions {
  containerId: string;
}
export interface PortForwardRequest {
  podSandboxId: string;
  ports: number[];
}

type Pending = { kind: 'exec'; req: ExecRequest } | { kind: 'attach'; req: AttachRequest } | { kind: 'portforward'; req: PortForwardRequest };

export interface StreamingHandlers {
  exec(req: ExecRequest, session: RemoteCommandSession): Promise<void>;
  attach(req: AttachRequest, session: RemoteCommandSession): Promise<void>;
  /** The dialer into the pod (throws if the pod is gone). */
  portForward(req: PortForwardRequest): DialPort;
  /** Throws (NotFound) when the container of an exec or attach is gone: the URL is then a 404, before any upgrade. */
  checkContainer?(containerId: string): void;
}


const tokenTtlMs = 60000;
const spdyProtocol = 'spdy/3.1';
const tunnelledPortForward = `SPDY/3.1+${portForwardProtocol}`;
const tunnelledPortForwardToken = 'usernode.spdy-3.1-portforward';

export class StreamingServer {
  private readonly tokens = new TokenCache<Pending>(tokenTtlMs);
  private readonly http: Server;
  private readonly ws = new WebSocketServer({ noServer: true, perMessageDeflate: false, handleProtocols: (offered) => this.wsProtocol(offered) });
  private base = '';

  constructor(
    private readonly handlers: StreamingHandlers,
    private readonly log: Logger,
  ) {
    this.http = createServer((req, res) => {
      // Plain requests: the URLs only upgrade.
      const status = this.route(req) ? 400 : 404;
      res.writeHead(status, { 'content-type': 'text/plain' }).end(status === 400 ? 'upgrade to SPDY/3.1 or websocket\n' : 'not found\n');
    });
    // A throw out of this listener would end the runtime half: whatever goes wrong ends this one connection.
    this.http.on('upgrade', (req: IncomingMessage, socket: Duplex, head: Buffer) => {
      try {
        this.upgrade(req, socket, head);
      } catch (e: unknown) {
        this.log.warn('streaming request failed', { error: messageOf(e) });
        socket.destroy();
      }
    });
  }

  /** Listens; resolves with the port (0: any free one). `urlHost`: the host the URLs name (default: `host`). */
  async listen(host: string, port: number, urlHost = host): Promise<number> {
    await new Promise<void>((resolve, reject) => {
      this.http.once('error', reject);
      this.http.listen(port, host, () => {
        this.http.off('error', reject);
        resolve();
      });
    });
    const a = this.http.address() as AddressInfo;
    this.base = `http://${urlHost.includes(':') ? `[${urlHost}]` : urlHost}:${a.port}`;
    return a.port;
  }

  close(): Promise<void> {
    return new Promise((resolve) => {
      this.http.closeAllConnections();
      this.http.close(() => resolve());
    });
  }

  /** The URL a client connects to for `p` (single use, a minute). */
  url(p: Pending): string {
    return `${this.base}/${p.kind}/${this.tokens.put(p)}`;
  }

  private route(req: IncomingMessage): { kind: string; token: string } | undefined {
    const m = /^\/(exec|attach|portforward)\/([A-Za-z0-9_-]+)(?:\?.*)?$/.exec(req.url ?? '');
    return m ? { kind: m[1]!, token: m[2]! } : undefined;
  }

  private wsProtocol(offered: Set<string>): string | false {
    if (offered.has(tunnelledPortForwardToken)) return tunnelledPortForward;
    return negotiate([...offered], remoteCommandVersions) ?? false;
  }

  private refuse(socket: Duplex, status: number, text: string): void {
    const reason = { 400: 'Bad Request', 403: 'Forbidden', 404: 'Not Found', 412: 'Precondition Failed', 500: 'Internal Server Error', 503: 'Service Unavailable' }[status] ?? 'Error';
    socket.end(`HTTP/1.1 ${status} ${reason}\r\nContent-Type: text/plain\r\nContent-Length: ${Buffer.byteLength(text)}\r\nConnection: close\r\n\r\n${text}`);
  }

  private upgrade(req: IncomingMessage, socket: Duplex, head: Buffer): void {
    socket.on('error', () => socket.destroy());
    const r = this.route(req);
    const pending = r ? this.tokens.take(r.token) : undefined;
    if (!r || !pending || pending.kind !== r.kind) {
      this.log.warn('streaming request refused: unknown or expired token', { path: (req.url ?? '').replace(/\/[^/]*$/, '/…') });
      this.refuse(socket, 404, 'unknown or expired token\n');
      return;
    }
    // The pod of a port-forward, the container of an exec or attach, is looked up before the upgrade: one removed since the URL was made is a 404, not a broken session.
    let dial: DialPort | undefined;
    try {
      if (pending.kind === 'portforward') dial = this.handlers.portForward(pending.req);
      else this.handlers.checkContainer?.(pending.req.containerId);
    } catch (e: unknown) {
      const w = toWire(e);
      this.log.warn('streaming request refused', { kind: pending.kind, error: w.message });
      this.refuse(socket, w.httpStatus, `${w.message}\n`);
      return;
    }
    const remote = pending.kind === 'portforward' ? undefined : pending;
    const upgrade = (req.headers.upgrade ?? '').toLowerCase();
    if (upgrade === 'websocket') {
      // "SPDY/3.1+portforward.k8s.io" is not an RFC 6455 token ('/'), which ws
      // refuses to parse: it goes in as a token and comes back as itself.
      const offered = req.headers['sec-websocket-protocol'];
      if (offered) req.headers['sec-websocket-protocol'] = offered.split(',').map((x) => (x.trim() === tunnelledPortForward ? tunnelledPortForwardToken : x.trim())).join(', ');
      this.ws.handleUpgrade(req, socket, head, (ws) => {
        if (dial) {
          if (ws.protocol !== tunnelledPortForward) return ws.close(1002, 'port-forward needs SPDY/3.1+portforward.k8s.io');
          servePortForward(new SpdySession(createWebSocketStream(ws)), dial, (m, f) => this.log.warn(m, f));
          return;
        }
        const version = ws.protocol as RemoteCommandVersion;
        if (!remote || !remoteCommandVersions.includes(version)) return ws.close(1002, 'no remote command protocol in common');
        void this.run(remote, websocketSession(ws, version, remote.req));
      });
      return;
    }
    if (upgrade !== spdyProtocol) {
      this.refuse(socket, 400, 'upgrade to SPDY/3.1 or websocket\n');
      return;
    }
    const offered = String(req.headers['x-stream-protocol-version'] ?? '').split(',');
    const version = pending.kind === 'portforward' ? (offered.some((o) => o.trim() === portForwardProtocol) ? portForwardProtocol : undefined) : negotiate(offered, remoteCommandVersions);
    if (!version) {
      this.refuse(socket, 403, `no protocol in common: offered ${offered.join(',') || 'none'}\n`);
      return;
    }
    socket.write(`HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\nUpgrade: SPDY/3.1\r\nX-Stream-Protocol-Version: ${version}\r\n\r\n`);
    if (head.length > 0) socket.unshift(head);
    const spdy = new SpdySession(socket);
    spdy.on('protocolError', (e: Error) => this.log.warn('SPDY protocol error', { error: e.message }));
    if (dial || !remote) {
      if (dial) servePortForward(spdy, dial, (m, f) => this.log.warn(m, f));
      return;
    }
    spdySession(spdy, version as RemoteCommandVersion, remote.req).then(
      (session) => this.run(remote, session),
      (e: Error) => {
        this.log.warn('streaming session did not start', { error: e.message });
        spdy.close();
      },
    );
  }

  private async run(p: Pending, session: RemoteCommandSession): Promise<void> {
    try {
      if (p.kind === 'exec') await this.handlers.exec(p.req, session);
      else if (p.kind === 'attach') await this.handlers.attach(p.req, session);
    } catch (e: unknown) {
      await session.finish({ error: (e as Error).message }).catch(() => undefined);
    }
  }
}
