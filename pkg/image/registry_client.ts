import { createHash } from 'node:crypto';
import { Readable, Transform, type TransformCallback } from 'node:stream';

import { DomainError, invalidArgument, notFound, permissionDenied, unavailable } from '../errdefs/errors.js';
import type { Logger } from '../log/logger.js';
import { manifestAccept } from './media_types.js';
import { dockerHubDomain, formatReference, type ImageReference } from './reference.js';

// An OCI distribution v2 client: manifests and blobs over HTTP(S), with the
// registry's own auth flow — anonymous, Basic, or a Bearer token fetched from
// the realm its WWW-Authenticate challenge names — and mirrors tried before
// the registry itself. Every byte is checked against the digest it was asked
// for while it streams; nothing unverified reaches a caller as complete.

export interface RegistryHostConfig {
  /** Endpoints tried first, e.g. "http://mirror.local:5000"; the registry itself comes last. */
  mirrors?: string[];
  /** Speak plain HTTP to this registry (localhost and 127.0.0.1 do by default, as in containerd). */
  plainHttp?: boolean;
}

/** Credentials from the CRI AuthConfig. */
export interface Credentials {
  username?: string;
  password?: string;
  /** base64("user:password"), as in ~/.docker/config.json. */
  auth?: string;
  /** An OAuth2 refresh token to exchange at the realm. */
  identityToken?: string;
  /** A bearer token to send as is. */
  registryToken?: string;
}

export interface RegistryClientOptions {
  hosts: Readonly<Record<string, RegistryHostConfig>>;
  log: Logger;
  fetch?: typeof fetch;
  /** Per-request timeout for headers; bodies are bounded by the caller's signal. */
  timeoutMs?: number;
}

export interface FetchedManifest {
  bytes: Buffer;
  mediaType: string;
  digest: string;
}

const maxManifestBytes = 4 * 1024 * 1024;
const maxCachedAuth = 1024;

export class RegistryClient {
  /** Authorization headers by (endpoint, repository scope, credential identity). */
  private readonly tokens = new Map<string, string>();
  private readonly doFetch: typeof fetch;

  constructor(private readonly opts: RegistryClientOptions) {
    this.doFetch = opts.fetch ?? fetch;
  }

  /** Manifest or index bytes for a tag or digest; by digest, the bytes are verified. */
  async manifest(ref: ImageReference, creds: Credentials | undefined, signal?: AbortSignal): Promise<FetchedManifest> {
    const target = ref.digest ?? ref.tag ?? 'latest';
    const res = await this.request(ref, `manifests/${target}`, { accept: manifestAccept, creds, signal });
    const bytes = await readLimited(res, maxManifestBytes, formatReference(ref));
    const digest = `sha256:${createHash('sha256').update(bytes).digest('hex')}`;
    if (ref.digest !== undefined && ref.digest !== digest) {
      throw invalidArgument(`manifest of ${formatReference(ref)} has digest ${digest}, not the ${ref.digest} asked for`, { field: 'image' });
    }
    const header = res.headers.get('content-type')?.split(';')[0]?.trim();
    let mediaType = header && header !== 'application/json' ? header : undefined;
    if (mediaType === undefined) {
      try {
        mediaType = (JSON.parse(bytes.toString('utf8')) as { mediaType?: string }).mediaType;
      } catch {
        // Reported below.
      }
    }
    if (mediaType === undefined) throw invalidArgument(`manifest of ${formatReference(ref)} has no media type`, { field: 'image' });
    return { bytes, mediaType, digest };
  }

  /**
   * A blob as a stream that fails (with a DomainError) if its bytes do not
   * hash to `digest` or their count is not `size`.
   */
  async blob(ref: ImageReference, digest: string, size: number, creds: Credentials | undefined, signal?: AbortSignal): Promise<Readable> {
    const res = await this.request(ref, `blobs/${digest}`, { accept: '*/*', creds, signal });
    if (!res.body) throw unavailable(`empty body for blob ${digest} of ${formatReference(ref)}`);
    const body = Readable.fromWeb(res.body as import('node:stream/web').ReadableStream<Uint8Array>);
    const verify = new DigestVerifier(digest, size, `blob ${digest} of ${formatReference(ref)}`);
    body.on('error', (e) => verify.destroy(unavailable(`reading blob ${digest} from ${ref.domain} failed: ${e.message}`, { cause: e })));
    return body.pipe(verify);
  }

  private endpoints(ref: ImageReference): string[] {
    const host = this.opts.hosts[ref.domain] ?? {};
    const local = /^(localhost|127\.\d+\.\d+\.\d+|\[::1\])(:\d+)?$/.test(ref.domain);
    const scheme = host.plainHttp || local ? 'http' : 'https';
    const own = ref.domain === dockerHubDomain ? 'https://registry-1.docker.io' : `${scheme}://${ref.domain}`;
    return [...(host.mirrors ?? []).map((m) => m.replace(/\/+$/, '')), own];
  }

  private async request(
    ref: ImageReference,
    suffix: string,
    o: { accept: string; creds: Credentials | undefined; signal: AbortSignal | undefined },
  ): Promise<Response> {
    const endpoints = this.endpoints(ref);
    let last: unknown;
    for (const [i, base] of endpoints.entries()) {
      // Mirrors come first and any failure of theirs moves on to the next
      // endpoint; the registry's own answer is final. Credentials given for
      // the registry are never sent to a mirror.
      const isRegistry = i === endpoints.length - 1;
      const host = new URL(base).host;
      try {
        const res = await this.authorized(ref, `${base}/v2/${ref.path}/${suffix}`, { ...o, creds: isRegistry ? o.creds : undefined });
        if (res.ok) return res;
        const text = await res.text().catch(() => '');
        const err = statusError(res.status, ref, suffix, text, host);
        if (isRegistry) throw err;
        last = err;
        this.opts.log.warn('mirror cannot serve it; trying the next endpoint', { endpoint: base, status: res.status });
      } catch (e: unknown) {
        if (isRegistry) {
          if (e instanceof DomainError) throw e;
          throw unavailable(`cannot reach ${base} for ${formatReference(ref)}: ${describeFetchError(e)}`, { cause: e });
        }
        last = e;
        this.opts.log.warn('mirror failed; trying the next endpoint', { endpoint: base, error: describeFetchError(e) });
      }
    }
    throw last instanceof Error ? last : unavailable(`no endpoint answered for ${formatReference(ref)}`);
  }

  /** One request, answering the registry's auth challenge once. */
  private async authorized(
    ref: ImageReference,
    url: string,
    o: { accept: string; creds: Credentials | undefined; signal: AbortSignal | undefined },
  ): Promise<Response> {
    const scope = `repository:${ref.path}:pull`;
    const origin = new URL(url).origin;
    // Per credential: a token or Basic header earned with one client's credentials is never sent for another
    // client's pull, and never for an anonymous one (a private image must stay private after someone pulled it).
    const key = `${origin} ${scope} ${credentialIdentity(o.creds)}`;
    const headers: Record<string, string> = { accept: o.accept, 'user-agent': 'usernode' };
    const cached = this.tokens.get(key);
    if (o.creds?.registryToken) headers.authorization = `Bearer ${o.creds.registryToken}`;
    else if (cached) headers.authorization = cached;
    let res = await this.send(url, headers, o.signal);
    if (res.status !== 401) return res;
    const challenge = parseChallenge(res.headers.get('www-authenticate') ?? '');
    await res.body?.cancel().catch(() => {});
    if (!challenge) throw permissionDenied(`${ref.domain} refused access to ${ref.path} and sent no usable WWW-Authenticate challenge`, { field: 'auth' });
    let auth: string;
    if (challenge.scheme === 'basic') {
      const basic = basicOf(o.creds);
      if (!basic) throw permissionDenied(`${ref.domain} requires credentials (Basic auth) to pull ${ref.path}`, { field: 'auth' });
      auth = `Basic ${basic}`;
    } else {
      auth = `Bearer ${await this.token(challenge.params, scope, o.creds, o.signal, ref)}`;
    }
    this.tokens.delete(key);
    this.tokens.set(key, auth);
    // One entry per repository and credential: the oldest go first past a bound (an entry is only a shortcut).
    for (const k of this.tokens.keys()) {
      if (this.tokens.size <= maxCachedAuth) break;
      this.tokens.delete(k);
    }
    headers.authorization = auth;
    res = await this.send(url, headers, o.signal);
    if (res.status === 401 || res.status === 403) {
      this.tokens.delete(key);
      await res.body?.cancel().catch(() => {});
      throw permissionDenied(`${ref.domain} rejected the credentials for ${ref.path} (HTTP ${res.status})`, { field: 'auth' });
    }
    return res;
  }

  private async token(
    params: Record<string, string>,
    scope: string,
    creds: Credentials | undefined,
    signal: AbortSignal | undefined,
    ref: ImageReference,
  ): Promise<string> {
    const realm = params.realm;
    if (!realm) throw permissionDenied(`${ref.domain} sent a Bearer challenge without a realm`, { field: 'auth' });
    const service = params.service;
    let res: Response;
    if (creds?.identityToken) {
      const form = new URLSearchParams({ grant_type: 'refresh_token', refresh_token: creds.identityToken, client_id: 'usernode', scope });
      if (service) form.set('service', service);
      res = await this.doFetch(realm, { method: 'POST', body: form, signal: this.timeout(signal) });
    } else {
      const u = new URL(realm);
      if (service) u.searchParams.set('service', service);
      u.searchParams.set('scope', params.scope ?? scope);
      const headers: Record<string, string> = {};
      const basic = basicOf(creds);
      if (basic) headers.authorization = `Basic ${basic}`;
      res = await this.doFetch(u, { headers, signal: this.timeout(signal) });
    }
    if (!res.ok) {
      throw permissionDenied(`token request to ${realm} for ${ref.path} failed with HTTP ${res.status}${basicOf(creds) ? ' (wrong credentials?)' : ''}`, { field: 'auth' });
    }
    const body = (await res.json()) as { token?: string; access_token?: string };
    const token = body.token ?? body.access_token;
    if (!token) throw permissionDenied(`token response from ${realm} holds no token`, { field: 'auth' });
    return token;
  }

  /** The timeout covers the wait for response headers only; a body may stream as long as the caller's signal allows. */
  private async send(url: string, headers: Record<string, string>, signal: AbortSignal | undefined): Promise<Response> {
    const ctl = new AbortController();
    const timer = setTimeout(() => ctl.abort(new Error(`no answer within ${this.opts.timeoutMs ?? 30000} ms`)), this.opts.timeoutMs ?? 30000);
    try {
      return await this.doFetch(url, { headers, redirect: 'follow', signal: signal ? AbortSignal.any([signal, ctl.signal]) : ctl.signal });
    } finally {
      clearTimeout(timer);
    }
  }

  private timeout(signal: AbortSignal | undefined): AbortSignal {
    const t = AbortSignal.timeout(this.opts.timeoutMs ?? 30000);
    return signal ? AbortSignal.any([signal, t]) : t;
  }
}

/**
 * Which credential a request carries, as a cache key: a hash of every field
 * (so no secret sits in the key), or "anonymous" for none.
 */
export function credentialIdentity(c: Credentials | undefined): string {
  const fields = [c?.username, c?.password, c?.auth, c?.identityToken, c?.registryToken].map((v) => v ?? '');
  if (fields.every((v) => v === '')) return 'anonymous';
  return createHash('sha256').update(JSON.stringify(fields)).digest('hex');
}

function basicOf(c: Credentials | undefined): string | undefined {
  if (!c) return undefined;
  if (c.auth) return c.auth;
  if (c.username !== undefined && c.username !== '') return Buffer.from(`${c.username}:${c.password ?? ''}`).toString('base64');
  return undefined;
}

/** `Bearer realm="…",service="…",scope="…"` or `Basic realm="…"`. */
export function parseChallenge(header: string): { scheme: 'basic' | 'bearer'; params: Record<string, string> } | undefined {
  const m = /^\s*(\w+)\s*(.*)$/.exec(header);
  if (!m) return undefined;
  const scheme = m[1]!.toLowerCase();
  if (scheme !== 'basic' && scheme !== 'bearer') return undefined;
  const params: Record<string, string> = {};
  for (const p of m[2]!.matchAll(/(\w+)\s*=\s*(?:"((?:[^"\\]|\\.)*)"|([^\s,]+))/g)) params[p[1]!.toLowerCase()] = (p[2] ?? p[3] ?? '').replace(/\\(.)/g, '$1');
  return { scheme, params };
}

function statusError(status: number, ref: ImageReference, suffix: string, body: string, host: string): Error {
  const what = suffix.startsWith('manifests/') ? formatReference(ref) : `${suffix.slice('blobs/'.length)} of ${formatReference(ref)}`;
  const detail = registryErrorText(body);
  if (status === 404) return notFound(`${what} not found on ${host}${detail}`, { field: 'image' });
  if (status === 401 || status === 403) return permissionDenied(`${host} denied access to ${what} (HTTP ${status})${detail}`, { field: 'auth' });
  if (status === 429) return unavailable(`${host} is rate limiting pulls (HTTP 429)${detail}`);
  return unavailable(`${host} answered HTTP ${status} for ${what}${detail}`);
}

function registryErrorText(body: string): string {
  try {
    const j = JSON.parse(body) as { errors?: Array<{ code?: string; message?: string }> };
    const e = j.errors?.[0];
    return e ? `: ${e.code ?? ''} ${e.message ?? ''}`.trimEnd() : '';
  } catch {
    return '';
  }
}

function describeFetchError(e: unknown): string {
  if (!(e instanceof Error)) return String(e);
  const cause = (e as { cause?: unknown }).cause;
  return cause instanceof Error ? `${e.message} (${cause.message})` : e.message;
}

async function readLimited(res: Response, limit: number, what: string): Promise<Buffer> {
  const len = Number(res.headers.get('content-length') ?? 0);
  if (len > limit) throw invalidArgument(`manifest of ${what} is ${len} bytes; at most ${limit} are accepted`, { field: 'image' });
  const buf = Buffer.from(await res.arrayBuffer());
  if (buf.length > limit) throw invalidArgument(`manifest of ${what} is over ${limit} bytes`, { field: 'image' });
  return buf;
}

/** Passes bytes through and fails the stream unless they hash to `digest` and count `size`. */
export class DigestVerifier extends Transform {
  private readonly hash;
  private readonly algorithm: string;
  private readonly expectHex: string;
  private count = 0;

  constructor(
    digest: string,
    private readonly size: number,
    private readonly what: string,
  ) {
    super();
    const [alg, hex] = digest.split(':');
    if (alg !== 'sha256' && alg !== 'sha512') throw invalidArgument(`unsupported digest algorithm in ${digest}`, { field: 'digest' });
    this.algorithm = alg;
    this.expectHex = hex ?? '';
    this.hash = createHash(alg);
  }

  override _transform(chunk: Buffer, _enc: BufferEncoding, cb: TransformCallback): void {
    this.count += chunk.length;
    if (this.size >= 0 && this.count > this.size) {
      cb(invalidArgument(`${this.what} is larger than the ${this.size} bytes its descriptor states`, { field: 'digest' }));
      return;
    }
    this.hash.update(chunk);
    cb(null, chunk);
  }

  override _flush(cb: TransformCallback): void {
    const got = this.hash.digest('hex');
    if (this.size >= 0 && this.count !== this.size) {
      cb(invalidArgument(`${this.what} has ${this.count} bytes, not the ${this.size} its descriptor states`, { field: 'digest' }));
    } else if (got !== this.expectHex) {
      cb(invalidArgument(`${this.what} does not match its digest: got ${this.algorithm}:${got}`, { field: 'digest' }));
    } else cb();
  }
}
