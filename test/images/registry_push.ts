import { blobsOf, type Blob, type Built } from './oci.js';

// Pushes images with the OCI distribution API over plain HTTP: blobs by
// monolithic upload (POST /v2/<name>/blobs/uploads/, then PUT ?digest=),
// skipped when HEAD finds them and mounted from a repository of the same
// registry that already holds them; then child manifests by digest, then the
// top manifest (image or index) by each tag.

export interface RegistryTarget {
  /** host:port, spoken to over plain HTTP. */
  host: string;
  /** "user:password" for Basic auth, or undefined for anonymous. */
  credentials?: string;
}

export interface PushStats {
  uploaded: number;
  mounted: number;
  skipped: number;
  manifests: number;
}

export class RegistryPusher {
  readonly stats: PushStats = { uploaded: 0, mounted: 0, skipped: 0, manifests: 0 };
  /** digest → a repository of this registry known to hold it. */
  private readonly holders = new Map<string, string>();
  private readonly base: string;
  private readonly authorization: string | undefined;

  constructor(readonly target: RegistryTarget) {
    this.base = `http://${target.host}`;
    this.authorization = target.credentials ? `Basic ${Buffer.from(target.credentials).toString('base64')}` : undefined;
  }

  /** Pushes `artifact` to `repository` under each of `tags`; returns the digest the registry reports for the top manifest. */
  async push(repository: string, tags: readonly string[], artifact: Built): Promise<string> {
    for (const b of blobsOf(artifact)) await this.pushBlob(repository, b);
    if (artifact.kind === 'index') {
      for (const c of artifact.children) await this.putManifest(repository, c.manifest.digest, c.manifest);
    }
    let digest = '';
    for (const tag of tags) digest = await this.putManifest(repository, tag, artifact.manifest);
    return digest;
  }

  private async request(method: string, pathOrUrl: string, init: { headers?: Record<string, string>; body?: Buffer } = {}): Promise<Response> {
    const url = new URL(pathOrUrl, this.base);
    const headers: Record<string, string> = { 'user-agent': 'usernode-test-images', ...init.headers };
    if (this.authorization) headers.authorization = this.authorization;
    // A copy typed as an ArrayBuffer view: fetch's BodyInit does not take a Buffer over ArrayBufferLike.
    return fetch(url, { method, headers, ...(init.body ? { body: new Uint8Array(init.body) } : {}), redirect: 'manual' });
  }

  private async fail(what: string, res: Response): Promise<never> {
    const text = await res.text().catch(() => '');
    throw new Error(`${what} on ${this.target.host}: HTTP ${res.status} ${text.slice(0, 500)}`);
  }

  private async pushBlob(repository: string, b: Blob): Promise<void> {
    const head = await this.request('HEAD', `/v2/${repository}/blobs/${b.digest}`);
    if (head.ok) {
      this.stats.skipped++;
      this.holders.set(b.digest, repository);
      return;
    }
    if (head.status !== 404) await this.fail(`HEAD blob ${b.digest} in ${repository}`, head);

    const from = this.holders.get(b.digest);
    const start = await this.request(
      'POST',
      from ? `/v2/${repository}/blobs/uploads/?mount=${encodeURIComponent(b.digest)}&from=${encodeURIComponent(from)}` : `/v2/${repository}/blobs/uploads/`,
      { headers: { 'content-length': '0' } },
    );
    if (start.status === 201) {
      await start.body?.cancel();
      this.stats.mounted++;
      this.holders.set(b.digest, repository);
      return;
    }
    if (start.status !== 202) await this.fail(`starting the upload of ${b.digest} to ${repository}`, start);
    await start.body?.cancel();
    const location = start.headers.get('location');
    if (!location) throw new Error(`${this.target.host} started an upload to ${repository} without a Location`);
    const url = new URL(location, this.base);
    url.searchParams.set('digest', b.digest);
    const put = await this.request('PUT', url.toString(), {
      headers: { 'content-type': 'application/octet-stream', 'content-length': String(b.size) },
      body: b.bytes,
    });
    if (put.status !== 201) await this.fail(`uploading ${b.digest} to ${repository}`, put);
    await put.body?.cancel();
    const got = put.headers.get('docker-content-digest');
    if (got && got !== b.digest) throw new Error(`${this.target.host} stored ${b.digest} in ${repository} as ${got}`);
    this.stats.uploaded++;
    this.holders.set(b.digest, repository);
  }

  private async putManifest(repository: string, reference: string, m: Blob): Promise<string> {
    const res = await this.request('PUT', `/v2/${repository}/manifests/${reference}`, {
      headers: { 'content-type': m.mediaType, 'content-length': String(m.size) },
      body: m.bytes,
    });
    if (res.status !== 201) await this.fail(`putting manifest ${repository}:${reference} (${m.mediaType})`, res);
    await res.body?.cancel();
    const got = res.headers.get('docker-content-digest');
    if (got && got !== m.digest) throw new Error(`${this.target.host} stored manifest ${repository}:${reference} as ${got}, not ${m.digest}`);
    this.stats.manifests++;
    return got ?? m.digest;
  }
}
