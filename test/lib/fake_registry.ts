import { createHash } from 'node:crypto';
import { createServer, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { gzipSync } from 'node:zlib';

import { pack } from 'tar-stream';

// A registry that misbehaves on purpose, for the fault tests the real
// docker-registry cannot stage (it verifies what is pushed): a blob whose
// bytes do not match its digest, a connection cut mid-blob. It speaks just
// enough of the distribution API for a pull, on an address of this host that
// the node namespace reaches through slirp4netns (not loopback: the node
// namespace cannot reach that by design).

export type Fault = { kind: 'corrupt' } | { kind: 'cut'; afterBytes: number } | { kind: 'hold'; release: Promise<void> };

interface Blob {
  bytes: Buffer;
  mediaType: string;
}

export const sha256 = (b: Buffer): string => `sha256:${createHash('sha256').update(b).digest('hex')}`;

/** A gzip layer holding `files` (name → content), deterministic. */
export async function layerOf(files: Record<string, string>): Promise<{ blob: Buffer; diffId: string }> {
  const p = pack();
  const chunks: Buffer[] = [];
  p.on('data', (c: unknown) => chunks.push(c as Buffer));
  const done = new Promise<void>((r) => p.on('end', () => r()));
  for (const [name, content] of Object.entries(files).sort()) {
    p.entry({ name, mode: 0o644, mtime: new Date(0), uid: 0, gid: 0 }, content);
  }
  p.finalize();
  await done;
  const tar = Buffer.concat(chunks);
  return { blob: gzipSync(tar), diffId: sha256(tar) };
}

export class FakeRegistry {
  private readonly blobs = new Map<string, Blob>();
  private readonly manifests = new Map<string, { bytes: Buffer; mediaType: string }>();
  private readonly faults = new Map<string, Fault>();
  private server: Server | undefined;
  private readonly tokens = new Set<string>();
  /** When set, /v2/ needs a Bearer token from /token, which needs these Basic credentials. */
  bearer: { user: string; password: string } | undefined;
  /** Token requests answered, with the service and scope they asked for. */
  readonly tokenRequests: Array<{ service: string | null; scope: string | null; ok: boolean }> = [];
  /** Blob GETs served, by digest. */
  readonly served = new Map<string, number>();
  address = '';

  async addImage(repo: string, tag: string, layers: Array<{ blob: Buffer; diffId: string }>): Promise<{ manifestDigest: string; configDigest: string; layerDigests: string[] }> {
    const config = Buffer.from(
      JSON.stringify({ architecture: 'amd64', os: 'linux', config: { Cmd: ['/bin/sh'] }, rootfs: { type: 'layers', diff_ids: layers.map((l) => l.diffId) } }),
    );
    const configDigest = sha256(config);
    this.blobs.set(configDigest, { bytes: config, mediaType: 'application/vnd.oci.image.config.v1+json' });
    const layerDescs = layers.map((l) => {
      const d = sha256(l.blob);
      this.blobs.set(d, { bytes: l.blob, mediaType: 'application/vnd.oci.image.layer.v1.tar+gzip' });
      return { mediaType: 'application/vnd.oci.image.layer.v1.tar+gzip', digest: d, size: l.blob.length };
    });
    const manifest = Buffer.from(
      JSON.stringify({
        schemaVersion: 2,
        mediaType: 'application/vnd.oci.image.manifest.v1+json',
        config: { mediaType: 'application/vnd.oci.image.config.v1+json', digest: configDigest, size: config.length },
        layers: layerDescs,
      }),
    );
    const manifestDigest = sha256(manifest);
    const m = { bytes: manifest, mediaType: 'application/vnd.oci.image.manifest.v1+json' };
    this.manifests.set(`${repo}:${tag}`, m);
    this.manifests.set(`${repo}@${manifestDigest}`, m);
    return { manifestDigest, configDigest, layerDigests: layerDescs.map((l) => l.digest) };
  }

  fault(digest: string, f: Fault | undefined): void {
    if (f) this.faults.set(digest, f);
    else this.faults.delete(digest);
  }

  async listen(host: string): Promise<string> {
    this.server = createServer((req, res) => this.handle(req.method ?? 'GET', req.url ?? '/', res, req.headers.authorization));
    await new Promise<void>((resolve, reject) => {
      this.server!.once('error', (e) => reject(new Error(`fake registry cannot listen on ${host} (is the test host up? scripts/testhost.sh up): ${e.message}`)));
      this.server!.listen(0, host, resolve);
    });
    this.address = `${host}:${(this.server.address() as AddressInfo).port}`;
    return this.address;
  }

  async close(): Promise<void> {
    this.server?.closeAllConnections();
    await new Promise<void>((r) => (this.server ? this.server.close(() => r()) : r()));
  }

  private handle(method: string, url: string, res: ServerResponse, authorization: string | undefined): void {
    if (url.startsWith('/token')) {
      const u = new URL(url, 'http://x');
      const want = this.bearer ? `Basic ${Buffer.from(`${this.bearer.user}:${this.bearer.password}`).toString('base64')}` : undefined;
      const ok = want !== undefined && authorization === want;
      this.tokenRequests.push({ service: u.searchParams.get('service'), scope: u.searchParams.get('scope'), ok });
      if (!ok) {
        res.writeHead(401, { 'content-type': 'application/json' }).end('{"details":"incorrect username or password"}');
        return;
      }
      const token = createHash('sha256').update(String(Math.random())).digest('hex');
      this.tokens.add(token);
      res.writeHead(200, { 'content-type': 'application/json' }).end(JSON.stringify({ token, expires_in: 300 }));
      return;
    }
    if (this.bearer && !(authorization?.startsWith('Bearer ') && this.tokens.has(authorization.slice(7)))) {
      const repo = /^\/v2\/(.+)\/(manifests|blobs)\//.exec(url)?.[1] ?? '';
      res
        .writeHead(401, {
          'content-type': 'application/json',
          'www-authenticate': `Bearer realm="http://${this.address}/token",service="fake-registry",scope="repository:${repo}:pull"`,
        })
        .end('{"errors":[{"code":"UNAUTHORIZED","message":"authentication required"}]}');
      return;
    }
    if (url === '/v2/' || url === '/v2') {
      res.writeHead(200, { 'content-type': 'application/json' }).end('{}');
      return;
    }
    const m = /^\/v2\/(.+)\/(manifests|blobs)\/([^/]+)$/.exec(url);
    if (!m) {
      res.writeHead(404).end();
      return;
    }
    const [, repo, kind, ref] = m as unknown as [string, string, string, string];
    if (kind === 'manifests') {
      const man = this.manifests.get(ref.startsWith('sha256:') ? `${repo}@${ref}` : `${repo}:${ref}`);
      if (!man) {
        res.writeHead(404, { 'content-type': 'application/json' }).end(JSON.stringify({ errors: [{ code: 'MANIFEST_UNKNOWN', message: 'manifest unknown' }] }));
        return;
      }
      res.writeHead(200, { 'content-type': man.mediaType, 'docker-content-digest': sha256(man.bytes), 'content-length': man.bytes.length });
      res.end(method === 'HEAD' ? undefined : man.bytes);
      return;
    }
    const blob = this.blobs.get(ref);
    if (!blob) {
      res.writeHead(404).end();
      return;
    }
    this.served.set(ref, (this.served.get(ref) ?? 0) + 1);
    const fault = this.faults.get(ref);
    res.writeHead(200, { 'content-type': 'application/octet-stream', 'content-length': blob.bytes.length });
    if (!fault) {
      res.end(blob.bytes);
    } else if (fault.kind === 'corrupt') {
      const bad = Buffer.from(blob.bytes);
      bad[bad.length - 1] = (bad[bad.length - 1]! + 1) % 256;
      res.end(bad);
    } else if (fault.kind === 'hold') {
      // A slow registry: a few bytes, then the rest once the test lets go.
      res.write(blob.bytes.subarray(0, 16));
      void fault.release.then(() => res.end(blob.bytes.subarray(16)));
    } else {
      // The registry "dies" mid-blob: half the bytes, then the connection drops.
      res.write(blob.bytes.subarray(0, fault.afterBytes), () => res.socket?.destroy());
    }
  }
}
