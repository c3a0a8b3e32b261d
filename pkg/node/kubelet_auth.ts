import { createHash } from 'node:crypto';
import type { TLSSocket } from 'node:tls';

import { AuthenticationV1Api, AuthorizationV1Api, type KubeConfig } from '@kubernetes/client-node';

// Who may use the kubelet API, decided as kubelet's webhook modes decide it
// (pkg/kubelet/server/auth.go and the apiserver's authn/authz filters):
//
//   authentication: a client certificate that verifies against the client CA
//   (user = CN, groups = O), else an "Authorization: Bearer" token that a
//   TokenReview accepts; neither → anonymous if enabled, else 401. A
//   credential that was offered and failed (a certificate the CA did not sign,
//   a token the API server rejects) is 401 even with anonymous enabled.
//
//   authorization: a SubjectAccessReview of verb (from the HTTP method),
//   resource "nodes", name = the node, and the subresource the path maps to;
//   /pods and /healthz are first checked as their fine-grained subresource
//   ("pods", "healthz": KubeletFineGrainedAuthz, on by default since 1.33)
//   and then as "proxy", allowed if either is. Denied → 403 naming the last
//   attributes checked, in kubelet's words.
//
// Without a control plane (no ClusterAuth) there is nothing to review a token
// or an access with: tokens are refused (401) and an authenticated caller is
// allowed — kubelet's AlwaysAllow authorization mode, the only one that works
// without an API server. The client CA is then what admits callers.

export interface UserInfo {
  username: string;
  uid?: string;
  groups: string[];
  extra?: Record<string, string[]>;
}

export interface AccessAttributes {
  user: string;
  uid?: string;
  groups: string[];
  extra?: Record<string, string[]>;
  verb: string;
  resource: 'nodes';
  subresource: string;
  name: string;
}

export interface ClusterAuth {
  tokenReview(token: string): Promise<{ authenticated: boolean; user?: UserInfo; error?: string }>;
  subjectAccessReview(a: AccessAttributes): Promise<{ allowed: boolean; reason?: string }>;
}

export const anonymousUser: UserInfo = { username: 'system:anonymous', groups: ['system:unauthenticated'] };

/** kubelet's mapping of HTTP methods to API verbs; other methods get none (and no access). */
export function verbOf(method: string): string {
  switch (method.toUpperCase()) {
    case 'POST':
      return 'create';
    case 'GET':
    case 'HEAD':
      // kubelet maps only GET; HEAD reads what GET reads, as the API server treats it.
      return 'get';
    case 'PUT':
      return 'update';
    case 'PATCH':
      return 'patch';
    case 'DELETE':
      return 'delete';
    default:
      return '';
  }
}

/** `path` is `prefix` or below it. */
function isSubpath(path: string, prefix: string): boolean {
  return path === prefix || path.startsWith(`${prefix}/`);
}

/**
 * The subresources a request is checked as, in order (any one allowing it is
 * enough). Note that, as in kubelet, a WebSocket exec or attach (a GET) is
 * checked as "get" of nodes/proxy, an SPDY one (a POST) as "create".
 */
export function subresourcesOf(path: string): string[] {
  if (isSubpath(path, '/stats')) return ['stats'];
  if (isSubpath(path, '/metrics')) return ['metrics'];
  if (isSubpath(path, '/logs')) return ['log'];
  if (isSubpath(path, '/checkpoint')) return ['checkpoint'];
  if (isSubpath(path, '/pods') || isSubpath(path, '/runningpods')) return ['pods', 'proxy'];
  if (isSubpath(path, '/healthz')) return ['healthz', 'proxy'];
  return ['proxy'];
}

/** What a request presented, as the TLS layer and its headers tell it. */
export interface Credentials {
  /** A client certificate, if one was presented (and only then). */
  certificate?: { verified: boolean; error?: string; commonName: string; organizations: string[] };
  authorization?: string;
}

export function credentialsOf(socket: TLSSocket, authorization: string | undefined): Credentials {
  const c: Credentials = authorization === undefined ? {} : { authorization };
  const peer = socket.getPeerCertificate();
  if (peer && Object.keys(peer).length > 0 && peer.subject) {
    const list = (v: string | string[] | undefined): string[] => (v === undefined ? [] : Array.isArray(v) ? v : [v]);
    const err = socket.authorizationError as Error | string | null | undefined;
    c.certificate = {
      verified: socket.authorized,
      commonName: list(peer.subject.CN)[0] ?? '',
      organizations: list(peer.subject.O),
      ...(err ? { error: typeof err === 'string' ? err : err.message } : {}),
    };
  }
  return c;
}

export type AuthnResult = { ok: true; user: UserInfo; method: 'x509' | 'token' | 'anonymous' } | { ok: false; reason: string };

export interface AuthnConfig {
  /** A client CA is configured (certificates are requested and verified). */
  clientCA: boolean;
  auth?: ClusterAuth;
  anonymous: boolean;
}

export async function authenticate(c: Credentials, cfg: AuthnConfig): Promise<AuthnResult> {
  if (c.certificate && cfg.clientCA) {
    if (c.certificate.verified && c.certificate.commonName !== '') {
      return { ok: true, user: { username: c.certificate.commonName, groups: c.certificate.organizations }, method: 'x509' };
    }
    if (!c.certificate.verified) return { ok: false, reason: `client certificate not accepted: ${c.certificate.error ?? 'not signed by the client CA'}` };
  }
  if (c.authorization !== undefined) {
    const m = /^Bearer\s+(\S+)\s*$/i.exec(c.authorization);
    if (!m) return { ok: false, reason: 'Authorization header is not a bearer token' };
    if (!cfg.auth) return { ok: false, reason: 'bearer tokens cannot be reviewed without a control plane' };
    try {
      const r = await cfg.auth.tokenReview(m[1]!);
      if (!r.authenticated || !r.user) return { ok: false, reason: `token not accepted${r.error ? `: ${r.error}` : ''}` };
      return { ok: true, user: r.user, method: 'token' };
    } catch (e: unknown) {
      return { ok: false, reason: `TokenReview failed: ${(e as Error).message}` };
    }
  }
  if (cfg.anonymous) return { ok: true, user: anonymousUser, method: 'anonymous' };
  return { ok: false, reason: 'no client certificate or bearer token' };
}

export type AuthzResult = { allowed: true; attributes: AccessAttributes } | { allowed: false; status: 403 | 500; message: string; reason?: string };

function describe(a: AccessAttributes): string {
  return `user=${a.user}, verb=${a.verb}, resource=${a.resource}, subresource=${a.subresource}`;
}

export async function authorize(user: UserInfo, method: string, path: string, nodeName: string, auth: ClusterAuth | undefined): Promise<AuthzResult> {
  const verb = verbOf(method);
  const all = subresourcesOf(path).map(
    (subresource): AccessAttributes => ({
      user: user.username,
      ...(user.uid ? { uid: user.uid } : {}),
      groups: user.groups,
      ...(user.extra ? { extra: user.extra } : {}),
      verb,
      resource: 'nodes',
      subresource,
      name: nodeName,
    }),
  );
  if (!auth) return { allowed: true, attributes: all[all.length - 1]! };
  let last: { a: AccessAttributes; reason?: string } | undefined;
  for (const a of all) {
    if (verb === '') {
      last = { a, reason: `method ${method} has no API verb` };
      continue;
    }
    try {
      const r = await auth.subjectAccessReview(a);
      if (r.allowed) return { allowed: true, attributes: a };
      last = { a, ...(r.reason ? { reason: r.reason } : {}) };
    } catch (e: unknown) {
      return { allowed: false, status: 500, message: `Authorization error (${describe(a)})`, reason: (e as Error).message };
    }
  }
  return { allowed: false, status: 403, message: `Forbidden (${describe(last!.a)})`, ...(last!.reason ? { reason: last!.reason } : {}) };
}

// --- the control plane's reviews, cached ------------------------------------

export interface ReviewCacheOptions {
  /** kubelet's authentication.webhook.cacheTTL (2 min): a token the API server accepted. */
  tokenTtlMs?: number;
  /**
   * A token the API server rejected. kubelet's token cache keeps failures as
   * long as successes (the apiserver's delegating authenticator builds it
   * with cacheTTL for both): 2 min by default.
   */
  unauthenticatedTtlMs?: number;
  /** kubelet's authorization.webhook.cacheAuthorizedTTL (5 min). */
  allowedTtlMs?: number;
  /** kubelet's authorization.webhook.cacheUnauthorizedTTL (30 s). */
  deniedTtlMs?: number;
  now?: () => number;
  /** Entries kept at most per cache (oldest dropped first), so a flood of tokens cannot grow it without bound. */
  maxEntries?: number;
}

class TtlCache<V> {
  private readonly m = new Map<string, { v: V; until: number }>();
  constructor(
    private readonly now: () => number,
    private readonly max: number,
  ) {}
  get(k: string): V | undefined {
    const e = this.m.get(k);
    if (!e) return undefined;
    if (e.until <= this.now()) {
      this.m.delete(k);
      return undefined;
    }
    return e.v;
  }
  set(k: string, v: V, ttlMs: number): void {
    this.m.delete(k);
    this.m.set(k, { v, until: this.now() + ttlMs });
    while (this.m.size > this.max) this.m.delete(this.m.keys().next().value!);
  }
}

/** One call in flight per key: callers asking while it runs share its answer (kubelet's token cache uses singleflight). */
class InFlight<V> {
  private readonly m = new Map<string, Promise<V>>();
  run(k: string, f: () => Promise<V>): Promise<V> {
    const running = this.m.get(k);
    if (running) return running;
    const p = f().finally(() => this.m.delete(k));
    this.m.set(k, p);
    return p;
  }
}

/**
 * Reviews through `inner`, each answer kept for its TTL as kubelet's webhook
 * authenticator and authorizer keep theirs; failures (the API server down)
 * are not kept, so the next request asks again. Rejected tokens are kept
 * apart from accepted ones, so a flood of made-up tokens cannot push out the
 * entries of the callers who have real ones; concurrent requests with one
 * token (or one access) cost one review.
 */
export function cachedClusterAuth(inner: ClusterAuth, o: ReviewCacheOptions = {}): ClusterAuth {
  const now = o.now ?? Date.now;
  const max = o.maxEntries ?? 4096;
  type TokenAnswer = Awaited<ReturnType<ClusterAuth['tokenReview']>>;
  type AccessAnswer = Awaited<ReturnType<ClusterAuth['subjectAccessReview']>>;
  const tokens = new TtlCache<TokenAnswer>(now, max);
  const unauthenticated = new TtlCache<TokenAnswer>(now, max);
  const access = new TtlCache<AccessAnswer>(now, max);
  const tokenCalls = new InFlight<TokenAnswer>();
  const accessCalls = new InFlight<AccessAnswer>();
  return {
    tokenReview(token) {
      // Kept by digest: the cache holds no usable credential.
      const key = createHash('sha256').update(token).digest('hex');
      const hit = tokens.get(key) ?? unauthenticated.get(key);
      if (hit) return Promise.resolve(hit);
      return tokenCalls.run(key, async () => {
        const r = await inner.tokenReview(token);
        if (r.authenticated) tokens.set(key, r, o.tokenTtlMs ?? 120000);
        else unauthenticated.set(key, r, o.unauthenticatedTtlMs ?? o.tokenTtlMs ?? 120000);
        return r;
      });
    },
    subjectAccessReview(a) {
      const key = JSON.stringify([a.user, a.uid ?? '', [...a.groups].sort(), Object.entries(a.extra ?? {}).sort(), a.verb, a.resource, a.subresource, a.name]);
      const hit = access.get(key);
      if (hit) return Promise.resolve(hit);
      return accessCalls.run(key, async () => {
        const r = await inner.subjectAccessReview(a);
        access.set(key, r, r.allowed ? (o.allowedTtlMs ?? 300000) : (o.deniedTtlMs ?? 30000));
        return r;
      });
    },
  };
}

/** TokenReview and SubjectAccessReview against the cluster of `kc`, cached (cachedClusterAuth). */
export function clusterAuth(kc: KubeConfig, o: ReviewCacheOptions = {}): ClusterAuth {
  const authn = kc.makeApiClient(AuthenticationV1Api);
  const authz = kc.makeApiClient(AuthorizationV1Api);
  return cachedClusterAuth(
    {
      async tokenReview(token) {
        const r = await authn.createTokenReview({ body: { apiVersion: 'authentication.k8s.io/v1', kind: 'TokenReview', spec: { token } } });
        const s = r.status ?? {};
        const u = s.user;
        return {
          authenticated: s.authenticated === true && !!u?.username,
          ...(u?.username ? { user: { username: u.username, ...(u.uid ? { uid: u.uid } : {}), groups: u.groups ?? [], ...(u.extra ? { extra: u.extra } : {}) } } : {}),
          ...(s.error ? { error: s.error } : {}),
        };
      },
      async subjectAccessReview(a) {
        const r = await authz.createSubjectAccessReview({
          body: {
            apiVersion: 'authorization.k8s.io/v1',
            kind: 'SubjectAccessReview',
            spec: {
              user: a.user,
              ...(a.uid ? { uid: a.uid } : {}),
              groups: a.groups,
              ...(a.extra ? { extra: a.extra } : {}),
              resourceAttributes: { verb: a.verb, group: '', version: 'v1', resource: a.resource, subresource: a.subresource, name: a.name },
            },
          },
        });
        const s = r.status;
        const reason = s?.reason || s?.evaluationError;
        return { allowed: s?.allowed === true && s.denied !== true, ...(reason ? { reason } : {}) };
      },
    },
    o,
  );
}
