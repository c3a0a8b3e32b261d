import assert from 'node:assert/strict';
import { X509Certificate } from 'node:crypto';
import { readFile, stat } from 'node:fs/promises';
import { join } from 'node:path';
import { describe, test } from 'node:test';

import type { CriClients } from '../../proto/client.js';
import { silentLogger } from '../../pkg/log/logger.js';
import { type AccessAttributes, cachedClusterAuth, type ClusterAuth, subresourcesOf, verbOf } from '../../pkg/node/kubelet_auth.js';
import { type KubeletServerOptions, serveKubeletApi } from '../../pkg/node/kubelet_server.js';
import { type CertFiles, kubeletGet, makeCA, makeClientCert } from '../lib/kubelet_certs.js';
import { tempFolders } from '../lib/unit.js';

// Who gets in to the kubelet API: a real TLS server on loopback, client
// certificates made with openssl, and a fake control plane that records the
// reviews it is asked for.

const folders = tempFolders('kubelet-auth-');

/** A CRI that is not there: these tests never get past authorization to it. */
const noCri = new Proxy(
  {},
  {
    get: () =>
      new Proxy(
        {},
        { get: () => (_req: object, cb: (e: Error) => void) => cb(Object.assign(new Error('14 UNAVAILABLE: no runtime in this test'), { code: 14 })) },
      ),
  },
) as unknown as CriClients;

class FakeControlPlane implements ClusterAuth {
  reviews: AccessAttributes[] = [];
  tokens: string[] = [];
  /** user → subresources allowed ("*" any). */
  constructor(private readonly allowed: Record<string, string[]>) {}
  async tokenReview(token: string): ReturnType<ClusterAuth['tokenReview']> {
    this.tokens.push(token);
    if (token === 'bob-token') return { authenticated: true, user: { username: 'bob', uid: 'u-bob', groups: ['system:authenticated', 'devs'] } };
    return { authenticated: false, error: 'token not found' };
  }
  async subjectAccessReview(a: AccessAttributes): ReturnType<ClusterAuth['subjectAccessReview']> {
    this.reviews.push(a);
    const ok = (this.allowed[a.user] ?? []).some((s) => s === '*' || s === a.subresource);
    return ok ? { allowed: true } : { allowed: false, reason: 'no RBAC rule' };
  }
}

interface Bed {
  url: string;
  serverCA: string;
  ca: CertFiles;
  alice: CertFiles;
  rogue: CertFiles;
  close(): Promise<void>;
}

async function bed(o: Partial<KubeletServerOptions>, dirName = 'bed'): Promise<Bed> {
  const dir = await folders.fresh(dirName);
  const ca = await makeCA(dir, 'client-ca');
  const alice = await makeClientCert(dir, ca, 'alice', ['team-a', 'team-b']);
  const other = await makeCA(dir, 'other-ca');
  const rogue = await makeClientCert(dir, other, 'mallory', ['system:masters']);
  const pkiDir = o.tls?.pkiDir ?? join(dir, 'pki');
  const s = await serveKubeletApi({
    host: '127.0.0.1',
    port: 0,
    tls: { pkiDir },
    clientCAFile: ca.cert,
    anonymous: false,
    nodeName: 'node-a',
    cri: noCri,
    pods: () => [{ apiVersion: 'v1', kind: 'Pod', metadata: { name: 'web', namespace: 'default' } }],
    metrics: {
      node: async () => ({ contentType: 'text/plain; version=0.0.4', body: 'usernode_up 1\n' }),
      cadvisor: async () => ({ contentType: 'text/plain; version=0.0.4', body: 'container_cpu_usage_seconds_total 0\n' }),
      resource: async () => ({ contentType: 'text/plain; version=0.0.4', body: 'node_cpu_usage_seconds_total 1\n' }),
    },
    log: silentLogger,
    ...o,
  });
  return { url: `https://127.0.0.1:${s.port}`, serverCA: join(pkiDir, 'kubelet.crt'), ca, alice, rogue, close: () => s.close() };
}

describe('kubelet API authentication', () => {
  test('no credentials: 401 Unauthorized, on every path (unknown ones too), nothing reviewed', async () => {
    const cp = new FakeControlPlane({ alice: ['*'] });
    const b = await bed({ auth: cp });
    try {
      for (const p of ['/healthz', '/pods', '/exec/default/web/c?command=sh', '/no/such/path']) {
        const r = await kubeletGet(`${b.url}${p}`, { serverCA: b.serverCA });
        assert.equal(r.status, 401, p);
        assert.equal(r.body.trim(), 'Unauthorized');
      }
      assert.deepEqual(cp.reviews, []);
    } finally {
      await b.close();
    }
  });

  test('a client certificate the CA signed: CN is the user, each O a group; one from another CA is 401 even with anonymous on', async () => {
    const cp = new FakeControlPlane({ alice: ['healthz'] });
    const b = await bed({ auth: cp, anonymous: true });
    try {
      const ok = await kubeletGet(`${b.url}/healthz`, { serverCA: b.serverCA, client: b.alice });
      assert.equal(ok.status, 200);
      assert.equal(ok.body, 'ok');
      assert.deepEqual(cp.reviews, [{ user: 'alice', groups: ['team-a', 'team-b'], verb: 'get', resource: 'nodes', subresource: 'healthz', name: 'node-a' }]);
      const rogue = await kubeletGet(`${b.url}/healthz`, { serverCA: b.serverCA, client: b.rogue });
      assert.equal(rogue.status, 401);
    } finally {
      await b.close();
    }
  });

  test('a bearer token is reviewed (TokenReview): accepted, its user is authorized; rejected, 401', async () => {
    const cp = new FakeControlPlane({ bob: ['*'] });
    const b = await bed({ auth: cp });
    try {
      const ok = await kubeletGet(`${b.url}/pods`, { serverCA: b.serverCA, token: 'bob-token' });
      assert.equal(ok.status, 200);
      const list = JSON.parse(ok.body) as { kind: string; items: Array<{ metadata: { name: string } }> };
      assert.equal(list.kind, 'PodList');
      assert.deepEqual(list.items.map((p) => p.metadata.name), ['web']);
      assert.deepEqual(cp.reviews[0], { user: 'bob', uid: 'u-bob', groups: ['system:authenticated', 'devs'], verb: 'get', resource: 'nodes', subresource: 'pods', name: 'node-a' });
      const bad = await kubeletGet(`${b.url}/pods`, { serverCA: b.serverCA, token: 'stolen' });
      assert.equal(bad.status, 401);
      assert.deepEqual(cp.tokens, ['bob-token', 'stolen']);
    } finally {
      await b.close();
    }
  });

  test('anonymous: off is 401; on, system:anonymous in system:unauthenticated is authorized like anyone (403 in kubelet words when denied)', async () => {
    const cp = new FakeControlPlane({});
    const b = await bed({ auth: cp, anonymous: true });
    try {
      const r = await kubeletGet(`${b.url}/healthz`, { serverCA: b.serverCA });
      assert.equal(r.status, 403);
      assert.equal(r.body.trim(), 'Forbidden (user=system:anonymous, verb=get, resource=nodes, subresource=proxy)');
      assert.deepEqual(
        cp.reviews.map((a) => [a.user, a.groups, a.subresource]),
        [
          ['system:anonymous', ['system:unauthenticated'], 'healthz'],
          ['system:anonymous', ['system:unauthenticated'], 'proxy'],
        ],
      );
    } finally {
      await b.close();
    }
  });

  test('without a control plane: a verified client certificate is allowed (AlwaysAllow), a token cannot be reviewed (401)', async () => {
    const b = await bed({});
    try {
      assert.equal((await kubeletGet(`${b.url}/metrics`, { serverCA: b.serverCA, client: b.alice })).body, 'usernode_up 1\n');
      assert.equal((await kubeletGet(`${b.url}/metrics/cadvisor`, { serverCA: b.serverCA, client: b.alice })).status, 200);
      assert.equal((await kubeletGet(`${b.url}/healthz`, { serverCA: b.serverCA, token: 'bob-token' })).status, 401);
      assert.equal((await kubeletGet(`${b.url}/nope`, { serverCA: b.serverCA, client: b.alice })).status, 404);
      assert.equal((await kubeletGet(`${b.url}/healthz`, { serverCA: b.serverCA, client: b.alice, method: 'DELETE' })).status, 405);
    } finally {
      await b.close();
    }
  });
});

describe('kubelet API authorization attributes', () => {
  test("each path's subresource and each method's verb, as kubelet's auth.go maps them", () => {
    assert.deepEqual(subresourcesOf('/stats/summary'), ['stats']);
    assert.deepEqual(subresourcesOf('/stats'), ['stats']);
    assert.deepEqual(subresourcesOf('/statsfoo'), ['proxy']);
    assert.deepEqual(subresourcesOf('/metrics/cadvisor'), ['metrics']);
    assert.deepEqual(subresourcesOf('/logs/syslog'), ['log']);
    assert.deepEqual(subresourcesOf('/pods'), ['pods', 'proxy']);
    assert.deepEqual(subresourcesOf('/healthz'), ['healthz', 'proxy']);
    for (const p of ['/containerLogs/a/b/c', '/exec/a/b/c', '/attach/a/b/c', '/portForward/a/b', '/run/a/b/c']) assert.deepEqual(subresourcesOf(p), ['proxy'], p);
    assert.deepEqual(['GET', 'HEAD', 'POST', 'PUT', 'PATCH', 'DELETE', 'OPTIONS'].map(verbOf), ['get', 'get', 'create', 'update', 'patch', 'delete', '']);
  });

  test('through the server: an SPDY exec (POST) is create of nodes/proxy, a WebSocket one (GET) get; stats, metrics and logs their own', async () => {
    const cp = new FakeControlPlane({ alice: ['stats', 'metrics'] });
    const b = await bed({ auth: cp });
    try {
      const ask = (path: string, method = 'GET'): Promise<number> => kubeletGet(`${b.url}${path}`, { serverCA: b.serverCA, client: b.alice, method }).then((r) => r.status);
      assert.equal(await ask('/exec/default/web/c?command=sh&output=1', 'POST'), 403);
      assert.equal(await ask('/exec/default/web/c?command=sh&output=1'), 403);
      assert.equal(await ask('/containerLogs/default/web/c'), 403);
      assert.equal(await ask('/metrics/resource'), 200);
      // Allowed: the (missing) runtime answers next.
      assert.equal(await ask('/stats/summary'), 500);
      assert.deepEqual(
        cp.reviews.map((a) => `${a.verb} ${a.subresource}`),
        ['create proxy', 'get proxy', 'get proxy', 'get metrics', 'get stats'],
      );
    } finally {
      await b.close();
    }
  });
});

describe('the serving certificate', () => {
  test('made once (CN = node name, SANs the host and 127.0.0.1, key 0600) and reused on the next start', async () => {
    const pkiDir = join(await folders.fresh('pki'), 'pki');
    const first = await bed({ tls: { pkiDir } }, 'cert1');
    const cert = await readFile(join(pkiDir, 'kubelet.crt'), 'utf8');
    await first.close();
    const x = new X509Certificate(cert);
    assert.match(x.subject, /CN=node-a/);
    assert.match(x.subjectAltName ?? '', /IP Address:127\.0\.0\.1/);
    assert.match(x.subjectAltName ?? '', /DNS:node-a/);
    assert.equal((await stat(join(pkiDir, 'kubelet.key'))).mode & 0o777, 0o600);
    const second = await bed({ tls: { pkiDir } }, 'cert2');
    try {
      assert.equal(await readFile(join(pkiDir, 'kubelet.crt'), 'utf8'), cert);
      // The client verifies the server by that certificate (kubeletGet checks it).
      assert.equal((await kubeletGet(`${second.url}/healthz`, { serverCA: join(pkiDir, 'kubelet.crt'), client: second.alice })).status, 200);
    } finally {
      await second.close();
    }
  });
});

describe('review caching', () => {
  test("allowed answers kept 5 min, denied 30 s, tokens 2 min (kubelet's webhook TTLs); failures not kept", async () => {
    let now = 0;
    let calls = 0;
    let fail = false;
    const inner: ClusterAuth = {
      tokenReview: async () => {
        calls++;
        return { authenticated: true, user: { username: 'x', groups: [] } };
      },
      subjectAccessReview: async (a) => {
        calls++;
        if (fail) throw new Error('apiserver down');
        return { allowed: a.subresource === 'stats' };
      },
    };
    const c = cachedClusterAuth(inner, { now: () => now });
    const attrs = (subresource: string): AccessAttributes => ({ user: 'x', groups: ['g'], verb: 'get', resource: 'nodes', subresource, name: 'n' });
    await c.subjectAccessReview(attrs('stats'));
    await c.subjectAccessReview(attrs('proxy'));
    assert.equal(calls, 2);
    now = 29000;
    await c.subjectAccessReview(attrs('stats'));
    await c.subjectAccessReview(attrs('proxy'));
    assert.equal(calls, 2);
    now = 31000;
    await c.subjectAccessReview(attrs('proxy'));
    assert.equal(calls, 3, 'a denial is asked again after 30 s');
    now = 299000;
    await c.subjectAccessReview(attrs('stats'));
    assert.equal(calls, 3);
    now = 301000;
    fail = true;
    await assert.rejects(c.subjectAccessReview(attrs('stats')), /apiserver down/);
    fail = false;
    assert.equal((await c.subjectAccessReview(attrs('stats'))).allowed, true);
    assert.equal(calls, 5, 'a failure was cached');
    await c.tokenReview('t');
    now += 119000;
    await c.tokenReview('t');
    assert.equal(calls, 6);
    now += 2000;
    await c.tokenReview('t');
    assert.equal(calls, 7);
  });
});
