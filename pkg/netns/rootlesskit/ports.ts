import { request } from 'node:http';

import { alreadyExists, invalidArgument, unavailable } from '../../errdefs/errors.js';
import type { PortForward, PortManager } from '../port_manager.js';

// rootlesskit's port API (HTTP on its api.sock): the builtin port driver
// listens on the host and connects, from inside the node's network namespace,
// to childIP:childPort — the pod's own address, so no DNAT is needed.

interface ApiPort {
  id: number;
  spec: { proto: string; parentIP: string; parentPort: number; childIP?: string; childPort: number };
}

export class RootlesskitPorts implements PortManager {
  constructor(private readonly apiSocket: string) {}

  async add(p: Omit<PortForward, 'id'>): Promise<PortForward> {
    if (p.protocol === 'sctp') throw invalidArgument('rootlesskit forwards tcp and udp host ports, not sctp', { field: 'protocol' });
    const body = { proto: p.protocol, parentIP: p.hostIP, parentPort: p.hostPort, childIP: p.childIP, childPort: p.childPort };
    const res = await this.call('POST', '/v1/ports', body);
    if (res.status !== 200 && res.status !== 201) {
      const text = res.body.trim();
      if (/address already in use|already exists|conflict/i.test(text)) {
        throw alreadyExists(`host port ${p.hostIP || '0.0.0.0'}:${p.hostPort}/${p.protocol} is already in use on the host`, { field: 'host_port' });
      }
      throw unavailable(`rootlesskit could not forward host port ${p.hostPort}: ${text || `HTTP ${res.status}`}`, { field: 'host_port' });
    }
    const got = JSON.parse(res.body) as ApiPort;
    return { ...p, id: got.id };
  }

  async list(): Promise<PortForward[]> {
    const res = await this.call('GET', '/v1/ports');
    if (res.status !== 200) throw unavailable(`rootlesskit port list failed: HTTP ${res.status}`);
    // No forwards at all is JSON null.
    return ((JSON.parse(res.body) as ApiPort[] | null) ?? []).map((x) => ({
      id: x.id,
      protocol: x.spec.proto as PortForward['protocol'],
      hostIP: x.spec.parentIP,
      hostPort: x.spec.parentPort,
      childIP: x.spec.childIP ?? '127.0.0.1',
      childPort: x.spec.childPort,
    }));
  }

  async remove(id: number): Promise<void> {
    const res = await this.call('DELETE', `/v1/ports/${id}`);
    if (res.status >= 400 && res.status !== 404 && !/not found|no such/i.test(res.body)) {
      throw unavailable(`rootlesskit could not remove port forward ${id}: ${res.body.trim() || `HTTP ${res.status}`}`);
    }
  }

  private call(method: string, path: string, body?: unknown): Promise<{ status: number; body: string }> {
    return new Promise((resolve, reject) => {
      const payload = body === undefined ? undefined : JSON.stringify(body);
      const req = request(
        { socketPath: this.apiSocket, path, method, headers: { 'content-type': 'application/json', ...(payload ? { 'content-length': Buffer.byteLength(payload) } : {}) }, timeout: 10000 },
        (res) => {
          let text = '';
          res.setEncoding('utf8');
          res.on('data', (c: string) => (text += c));
          res.on('end', () => resolve({ status: res.statusCode ?? 0, body: text }));
          // The API's connection breaking mid-answer is an 'error' on the response: a failed call, not an uncaught throw.
          res.on('error', (e) => reject(unavailable(`rootlesskit API at ${this.apiSocket}: ${e.message}`, { cause: e })));
        },
      );
      req.on('timeout', () => req.destroy(new Error('rootlesskit API timed out')));
      req.on('error', (e) => reject(unavailable(`rootlesskit API at ${this.apiSocket}: ${e.message}`, { cause: e })));
      req.end(payload);
    });
  }
}
