import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { createServer, type IncomingHttpHeaders, type IncomingMessage, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import type { Readable } from 'node:stream';
import { describe, test } from 'node:test';

import { isDomainError } from '../../pkg/errdefs/errors.js';
import { silentLogger } from '../../pkg/log/logger.js';
import { mediaTypes } from '../../pkg/image/media_types.js';
import { type ImageReference, parseReference } from '../../pkg/image/reference.js';
import { type Credentials, parseChallenge, RegistryClient, type RegistryHostConfig } from '../../pkg/image/registry_client.js';

// The registry client against HTTP servers on 127.0.0.1 that this test runs
// (127.x speaks plain HTTP by default): what reaches the wire (paths, Accept,
// Authorization, token requests) and what the caller gets back or is told.

const sha256 = (b: Buffer): string => `sha256:${createHash('sha256').update(b).digest('hex')}`;

interface Seen {
  method: string;
  path: string;
  query: URLSearchParams;
  headers: IncomingHttpHeaders;
  body: string;
}

interface Reply {
  status?: number;
  headers?: Record<string, string>;
  body?: string | Buffer;
  /** Write the body without a content-length (chunked), as a cut stream would look. */
  chunked?: boolean;
  /** Send the headers (with `cutLength` as content-length) and part of the body, then drop the connection. */
  cutLength?: number;
  /** Never answer. */
  hang?: boolean;
}

type Handler = (req: Seen) => Reply;

interface TestServer {
  port: number;
  host: string;
  base: string;
  seen: Seen[];
  handler: Handler;
  close(): Promise<void>;
}

async function startServer(handler: Handler): Promise<TestServer> {
  const seen: Seen[] = [];
  const state: { handler: Handler } = { handler };
  const server = createServer((req: IncomingMessage, res: ServerResponse) => {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      const u = new URL(req.url ?? '/', 'http://x');
      const s: Seen = { method: req.method ?? '', path: u.pathname, query: u.searchParams, headers: req.headers, body: Buffer.concat(chunks).toString('utf8') };
      seen.push(s);
      let r: Reply;
      try {
        r = state.handler(s);
      } catch (e: unknown) {
        r = { status: 599, body: String(e) };
      }
      if (r.hang) return;
      const body = r.body === undefined ? Buffer.alloc(0) : Buffer.isBuffer(r.body) ? r.body : Buffer.from(r.body);
      const headers: Record<string, string> = { ...(r.headers ?? {}) };
      if (!r.chunked) headers['content-length'] = String(r.cutLength ?? body.length);
      res.writeHead(r.status ?? 200, headers);
      if (r.cutLength !== undefined) {
        res.write(body, () => setTimeout(() => res.socket?.destroy(), 20));
      } else if (r.chunked) {
        res.write(body);
        res.end();
      } else res.end(body);
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const port = (server.address() as AddressInfo).port;
  const t: TestServer = {
    port,
    host: `127.0.0.1:${port}`,
    base: `http://127.0.0.1:${port}`,
    seen,
    get handler() {
      return state.handler;
    },
    set handler(h: Handler) {
      state.handler = h;
    },
    close: () =>
      new Promise<void>((resolve) => {
        server.closeAllConnections();
        server.close(() => resolve());
      }),
  };
  return t;
}

async function withServers(count: number, fn: (servers: TestServer[]) => Promise<void>): Promise<void> {
  const servers: TestServer[] = [];
  try {
    for (let i = 0; i < count; i++) servers.push(await startServer(() => ({ status: 500, body: 'no handler' })));
    await fn(servers);
  } finally {
    for (const s of servers) await s.close();
  }
}

function client(hosts: Record<string, RegistryHostConfig> = {}, timeoutMs = 5000): RegistryClient {
  return new RegistryClient({ hosts, log: silentLogger, timeoutMs });
}

function refOn(s: TestServer, rest: string): ImageReference {
  return parseReference(`${s.host}/${rest}`);
}

const manifestBody = Buffer.from(
  JSON.stringify({
    schemaVersion: 2,
    mediaType: mediaTypes.ociManifest,
    config: { mediaType: mediaTypes.ociConfig, digest: `sha256:${'1'.repeat(64)}`, size: 10 },
    layers: [],
  }),
);
const manifestDigest = sha256(manifestBody);

const serveManifest = (req: Seen): Reply =>
  req.path === '/v2/team/app/manifests/v1' || req.path === `/v2/team/app/manifests/${manifestDigest}`
    ? { headers: { 'content-type': mediaTypes.ociManifest }, body: manifestBody }
    : { status: 404, headers: { 'content-type': 'application/json' }, body: JSON.stringify({ errors: [{ code: 'MANIFEST_UNKNOWN', message: 'manifest unknown' }] }) };

/** Asserts `p` rejects with a DomainError of `code` whose message matches every pattern. */
async function rejectsWith(p: Promise<unknown>, code: string, ...patterns: Array<RegExp | string>): Promise<Error> {
  let caught: unknown;
  try {
    await p;
  } catch (e: unknown) {
    caught = e;
  }
  assert.ok(caught !== undefined, 'expected a rejection');
  assert.ok(isDomainError(caught), `not a DomainError: ${String(caught)}`);
  assert.equal(caught.code, code, caught.message);
  for (const pat of patterns) {
    if (typeof pat === 'string') assert.ok(caught.message.includes(pat), `"${caught.message}" does not mention "${pat}"`);
    else assert.match(caught.message, pat);
  }
  return caught;
}

async function readAll(s: Readable): Promise<Buffer> {
  const out: Buffer[] = [];
  for await (const c of s) out.push(Buffer.from(c as Uint8Array));
  return Buffer.concat(out);
}

const b64 = (s: string): string => Buffer.from(s).toString('base64');

describe('RegistryClient.manifest', () => {
  test('by tag: GET /v2/<path>/manifests/<tag> with the manifest Accept list; media type from the header', async () => {
    await withServers(1, async ([reg]) => {
      reg!.handler = serveManifest;
      const m = await client().manifest(refOn(reg!, 'team/app:v1'), undefined);
      assert.deepEqual(m.bytes, manifestBody);
      assert.equal(m.mediaType, mediaTypes.ociManifest);
      assert.equal(m.digest, manifestDigest);
      assert.equal(reg!.seen.length, 1);
      const req = reg!.seen[0]!;
      assert.equal(req.method, 'GET');
      assert.equal(req.path, '/v2/team/app/manifests/v1');
      const accept = String(req.headers.accept);
      for (const mt of [mediaTypes.ociIndex, mediaTypes.dockerList, mediaTypes.ociManifest, mediaTypes.dockerManifest]) assert.ok(accept.includes(mt), `Accept lacks ${mt}: ${accept}`);
      assert.equal(req.headers.authorization, undefined, 'anonymous first');
    });
  });

  test('a content-type with parameters is reduced to the media type', async () => {
    await withServers(1, async ([reg]) => {
      reg!.handler = () => ({ headers: { 'content-type': `${mediaTypes.dockerList}; charset=utf-8` }, body: manifestBody });
      const m = await client().manifest(refOn(reg!, 'team/app:v1'), undefined);
      assert.equal(m.mediaType, mediaTypes.dockerList);
    });
  });

  test('a content-type of application/json: the media type comes from the body', async () => {
    await withServers(1, async ([reg]) => {
      reg!.handler = () => ({ headers: { 'content-type': 'application/json' }, body: manifestBody });
      const m = await client().manifest(refOn(reg!, 'team/app:v1'), undefined);
      assert.equal(m.mediaType, mediaTypes.ociManifest);
    });
  });

  test('no media type in header or body → InvalidArgument', async () => {
    await withServers(1, async ([reg]) => {
      reg!.handler = () => ({ headers: { 'content-type': 'application/json' }, body: JSON.stringify({ schemaVersion: 2 }) });
      await rejectsWith(client().manifest(refOn(reg!, 'team/app:v1'), undefined), 'InvalidArgument', 'no media type');
    });
  });

  test('a reference without a tag asks for :latest', async () => {
    await withServers(1, async ([reg]) => {
      reg!.handler = () => ({ headers: { 'content-type': mediaTypes.ociManifest }, body: manifestBody });
      await client().manifest(refOn(reg!, 'team/app'), undefined);
      assert.equal(reg!.seen[0]!.path, '/v2/team/app/manifests/latest');
    });
  });

  test('by digest: asked for by digest (not by tag) and verified', async () => {
    await withServers(1, async ([reg]) => {
      reg!.handler = serveManifest;
      const m = await client().manifest(refOn(reg!, `team/app:v1@${manifestDigest}`), undefined);
      assert.equal(m.digest, manifestDigest);
      assert.equal(reg!.seen[0]!.path, `/v2/team/app/manifests/${manifestDigest}`);
    });
  });

  test('by digest, wrong bytes → InvalidArgument naming both digests', async () => {
    await withServers(1, async ([reg]) => {
      const other = Buffer.from(manifestBody.toString('utf8').replace('"size":10', '"size":11'));
      reg!.handler = () => ({ headers: { 'content-type': mediaTypes.ociManifest }, body: other });
      await rejectsWith(client().manifest(refOn(reg!, `team/app@${manifestDigest}`), undefined), 'InvalidArgument', manifestDigest, sha256(other));
    });
  });

  test('404 → NotFound naming the reference', async () => {
    await withServers(1, async ([reg]) => {
      reg!.handler = serveManifest;
      const e = await rejectsWith(client().manifest(refOn(reg!, 'team/app:nope'), undefined), 'NotFound', `${reg!.host}/team/app:nope`);
      assert.match(e.message, /manifest unknown/, 'the registry’s own error text is passed on');
    });
  });

  test('403 without a challenge → PermissionDenied', async () => {
    await withServers(1, async ([reg]) => {
      reg!.handler = () => ({ status: 403, body: '' });
      await rejectsWith(client().manifest(refOn(reg!, 'team/app:v1'), undefined), 'PermissionDenied', 'HTTP 403');
    });
  });

  test('429 → Unavailable (rate limited)', async () => {
    await withServers(1, async ([reg]) => {
      reg!.handler = () => ({ status: 429, body: '' });
      await rejectsWith(client().manifest(refOn(reg!, 'team/app:v1'), undefined), 'Unavailable', 'rate limiting');
    });
  });

  test('a registry that cannot be reached → Unavailable naming it', async () => {
    let host = '';
    await withServers(1, async ([reg]) => {
      host = reg!.host;
    });
    await rejectsWith(client().manifest(parseReference(`${host}/team/app:v1`), undefined), 'Unavailable', host);
  });

  test('a registry that accepts the connection but never answers → Unavailable after the timeout', async () => {
    await withServers(1, async ([reg]) => {
      reg!.handler = () => ({ hang: true });
      const started = Date.now();
      await rejectsWith(client({}, 300).manifest(refOn(reg!, 'team/app:v1'), undefined), 'Unavailable', reg!.host, 'no answer within 300 ms');
      assert.ok(Date.now() - started < 4000, 'the timeout, not a much later failure');
    });
  });

  test('an oversized manifest is refused', async () => {
    await withServers(1, async ([reg]) => {
      reg!.handler = () => ({ headers: { 'content-type': mediaTypes.ociManifest }, body: Buffer.alloc(4 * 1024 * 1024 + 1, 0x20) });
      await rejectsWith(client().manifest(refOn(reg!, 'team/app:v1'), undefined), 'InvalidArgument', 'at most');
    });
  });
});

describe('RegistryClient Basic auth', () => {
  const basicRegistry =
    (user: string, password: string): Handler =>
    (req) => {
      if (req.headers.authorization !== `Basic ${b64(`${user}:${password}`)}`) {
        return { status: 401, headers: { 'www-authenticate': 'Basic realm="Registry Realm"' }, body: '' };
      }
      return serveManifest(req);
    };

  test('a Basic challenge without credentials → PermissionDenied "requires credentials"', async () => {
    await withServers(1, async ([reg]) => {
      reg!.handler = basicRegistry('alice', 's3cret');
      const e = await rejectsWith(client().manifest(refOn(reg!, 'team/app:v1'), undefined), 'PermissionDenied', 'requires credentials', 'team/app');
      assert.equal((e as { field?: string }).field, 'auth');
      assert.equal(reg!.seen.length, 1, 'no retry without credentials');
    });
  });

  test('a Basic challenge with username/password: the retry carries them', async () => {
    await withServers(1, async ([reg]) => {
      reg!.handler = basicRegistry('alice', 's3cret');
      const m = await client().manifest(refOn(reg!, 'team/app:v1'), { username: 'alice', password: 's3cret' });
      assert.equal(m.digest, manifestDigest);
      assert.equal(reg!.seen.length, 2);
      assert.equal(reg!.seen[1]!.headers.authorization, `Basic ${b64('alice:s3cret')}`);
    });
  });

  test('a Basic challenge with the docker config "auth" field', async () => {
    await withServers(1, async ([reg]) => {
      reg!.handler = basicRegistry('alice', 's3cret');
      const m = await client().manifest(refOn(reg!, 'team/app:v1'), { auth: b64('alice:s3cret') });
      assert.equal(m.digest, manifestDigest);
    });
  });

  test('wrong credentials → PermissionDenied "rejected the credentials"', async () => {
    await withServers(1, async ([reg]) => {
      reg!.handler = basicRegistry('alice', 's3cret');
      await rejectsWith(client().manifest(refOn(reg!, 'team/app:v1'), { username: 'alice', password: 'wrong' }), 'PermissionDenied', 'rejected the credentials', 'HTTP 401');
      assert.equal(reg!.seen.length, 2, 'one challenge, one retry, no loop');
    });
  });

  test('a 401 without a usable challenge → PermissionDenied', async () => {
    await withServers(1, async ([reg]) => {
      reg!.handler = () => ({ status: 401, headers: { 'www-authenticate': 'Negotiate abc' }, body: '' });
      await rejectsWith(client().manifest(refOn(reg!, 'team/app:v1'), { username: 'a', password: 'b' }), 'PermissionDenied', 'WWW-Authenticate');
    });
  });
});

describe('RegistryClient Bearer auth', () => {
  /** A registry whose challenge sends the client to `realm` on `auth`; `valid` is the set of tokens it accepts. */
  function bearerRegistry(reg: TestServer, auth: TestServer, valid: Set<string>): void {
    reg.handler = (req) => {
      const a = req.headers.authorization;
      if (a === undefined || !a.startsWith('Bearer ') || !valid.has(a.slice('Bearer '.length))) {
        return {
          status: 401,
          headers: { 'www-authenticate': `Bearer realm="${auth.base}/token",service="registry.test",scope="repository:team/app:pull"` },
          body: JSON.stringify({ errors: [{ code: 'UNAUTHORIZED', message: 'authentication required' }] }),
        };
      }
      return serveManifest(req);
    };
  }

  test('the client asks the realm with service, scope and Basic credentials, then retries with the token', async () => {
    await withServers(2, async ([reg, auth]) => {
      bearerRegistry(reg!, auth!, new Set(['tok-1']));
      auth!.handler = (req) =>
        req.headers.authorization === `Basic ${b64('bob:pw')}` ? { headers: { 'content-type': 'application/json' }, body: JSON.stringify({ token: 'tok-1' }) } : { status: 401, body: '' };
      const m = await client().manifest(refOn(reg!, 'team/app:v1'), { username: 'bob', password: 'pw' });
      assert.equal(m.digest, manifestDigest);

      assert.equal(auth!.seen.length, 1);
      const t = auth!.seen[0]!;
      assert.equal(t.method, 'GET');
      assert.equal(t.path, '/token');
      assert.equal(t.query.get('service'), 'registry.test');
      assert.equal(t.query.get('scope'), 'repository:team/app:pull');
      assert.equal(t.headers.authorization, `Basic ${b64('bob:pw')}`);

      assert.equal(reg!.seen.length, 2);
      assert.equal(reg!.seen[0]!.headers.authorization, undefined);
      assert.equal(reg!.seen[1]!.headers.authorization, 'Bearer tok-1');
    });
  });

  test('anonymous token: no Authorization to the realm', async () => {
    await withServers(2, async ([reg, auth]) => {
      bearerRegistry(reg!, auth!, new Set(['anon']));
      auth!.handler = () => ({ headers: { 'content-type': 'application/json' }, body: JSON.stringify({ access_token: 'anon' }) });
      await client().manifest(refOn(reg!, 'team/app:v1'), undefined);
      assert.equal(auth!.seen[0]!.headers.authorization, undefined);
      assert.equal(reg!.seen[1]!.headers.authorization, 'Bearer anon', 'access_token is accepted as well as token');
    });
  });

  test('the token is cached: a second manifest call does not go to the realm again', async () => {
    await withServers(2, async ([reg, auth]) => {
      bearerRegistry(reg!, auth!, new Set(['tok-1']));
      auth!.handler = () => ({ headers: { 'content-type': 'application/json' }, body: JSON.stringify({ token: 'tok-1' }) });
      const c = client();
      const ref = refOn(reg!, 'team/app:v1');
      await c.manifest(ref, { username: 'bob', password: 'pw' });
      await c.manifest(ref, { username: 'bob', password: 'pw' });
      await c.manifest(refOn(reg!, `team/app@${manifestDigest}`), { username: 'bob', password: 'pw' });
      assert.equal(auth!.seen.length, 1, 'one token request for three calls');
      assert.equal(reg!.seen.length, 4, 'challenge + retry, then two direct requests');
      assert.equal(reg!.seen[2]!.headers.authorization, 'Bearer tok-1');
      assert.equal(reg!.seen[3]!.headers.authorization, 'Bearer tok-1');
    });
  });

  test('an expired cached token is renewed at the realm', async () => {
    await withServers(2, async ([reg, auth]) => {
      const valid = new Set(['tok-1']);
      bearerRegistry(reg!, auth!, valid);
      let issued = 0;
      auth!.handler = () => ({ headers: { 'content-type': 'application/json' }, body: JSON.stringify({ token: `tok-${++issued}` }) });
      const c = client();
      const ref = refOn(reg!, 'team/app:v1');
      await c.manifest(ref, undefined);
      valid.clear();
      valid.add('tok-2');
      const m = await c.manifest(ref, undefined);
      assert.equal(m.digest, manifestDigest);
      assert.equal(auth!.seen.length, 2);
      assert.equal(reg!.seen.at(-1)!.headers.authorization, 'Bearer tok-2');
    });
  });

  test('identityToken → POST of a refresh_token form to the realm', async () => {
    await withServers(2, async ([reg, auth]) => {
      bearerRegistry(reg!, auth!, new Set(['from-refresh']));
      auth!.handler = () => ({ headers: { 'content-type': 'application/json' }, body: JSON.stringify({ access_token: 'from-refresh' }) });
      const creds: Credentials = { identityToken: 'refresh-me' };
      const m = await client().manifest(refOn(reg!, 'team/app:v1'), creds);
      assert.equal(m.digest, manifestDigest);
      assert.equal(auth!.seen.length, 1);
      const t = auth!.seen[0]!;
      assert.equal(t.method, 'POST');
      assert.equal(t.path, '/token');
      assert.match(String(t.headers['content-type']), /^application\/x-www-form-urlencoded/);
      const form = new URLSearchParams(t.body);
      assert.equal(form.get('grant_type'), 'refresh_token');
      assert.equal(form.get('refresh_token'), 'refresh-me');
      assert.equal(form.get('service'), 'registry.test');
      assert.equal(form.get('scope'), 'repository:team/app:pull');
      assert.ok(form.get('client_id'), 'a client_id is sent');
      assert.equal(reg!.seen.at(-1)!.headers.authorization, 'Bearer from-refresh');
    });
  });

  test('registryToken is sent as Bearer directly; the realm is never asked', async () => {
    await withServers(2, async ([reg, auth]) => {
      bearerRegistry(reg!, auth!, new Set(['given']));
      auth!.handler = () => ({ status: 500, body: 'should not be called' });
      const m = await client().manifest(refOn(reg!, 'team/app:v1'), { registryToken: 'given' });
      assert.equal(m.digest, manifestDigest);
      assert.equal(reg!.seen.length, 1);
      assert.equal(reg!.seen[0]!.headers.authorization, 'Bearer given');
      assert.equal(auth!.seen.length, 0);
    });
  });

  test('the realm refusing the credentials → PermissionDenied', async () => {
    await withServers(2, async ([reg, auth]) => {
      bearerRegistry(reg!, auth!, new Set(['x']));
      auth!.handler = () => ({ status: 401, body: '' });
      await rejectsWith(client().manifest(refOn(reg!, 'team/app:v1'), { username: 'bob', password: 'bad' }), 'PermissionDenied', 'HTTP 401', 'wrong credentials');
    });
  });

  test('a token the registry then refuses → PermissionDenied "rejected the credentials"', async () => {
    await withServers(2, async ([reg, auth]) => {
      bearerRegistry(reg!, auth!, new Set(['good']));
      auth!.handler = () => ({ headers: { 'content-type': 'application/json' }, body: JSON.stringify({ token: 'useless' }) });
      await rejectsWith(client().manifest(refOn(reg!, 'team/app:v1'), undefined), 'PermissionDenied', 'rejected the credentials');
    });
  });

  test('a token response without a token → PermissionDenied', async () => {
    await withServers(2, async ([reg, auth]) => {
      bearerRegistry(reg!, auth!, new Set(['x']));
      auth!.handler = () => ({ headers: { 'content-type': 'application/json' }, body: JSON.stringify({ expires_in: 300 }) });
      await rejectsWith(client().manifest(refOn(reg!, 'team/app:v1'), undefined), 'PermissionDenied', 'holds no token');
    });
  });

  test('a Bearer challenge without a realm → PermissionDenied', async () => {
    await withServers(1, async ([reg]) => {
      reg!.handler = () => ({ status: 401, headers: { 'www-authenticate': 'Bearer service="x"' }, body: '' });
      await rejectsWith(client().manifest(refOn(reg!, 'team/app:v1'), undefined), 'PermissionDenied', 'without a realm');
    });
  });
});

describe('RegistryClient mirrors', () => {
  test('a mirror answering 404 falls through to the registry', async () => {
    await withServers(2, async ([reg, mirror]) => {
      reg!.handler = serveManifest;
      mirror!.handler = () => ({ status: 404, body: '' });
      const c = client({ [reg!.host]: { mirrors: [mirror!.base] } });
      const m = await c.manifest(refOn(reg!, 'team/app:v1'), undefined);
      assert.equal(m.digest, manifestDigest);
      assert.equal(mirror!.seen.length, 1);
      assert.equal(mirror!.seen[0]!.path, '/v2/team/app/manifests/v1');
      assert.equal(reg!.seen.length, 1);
    });
  });

  test('a mirror answering 200 is used and the registry is not contacted', async () => {
    await withServers(2, async ([reg, mirror]) => {
      reg!.handler = () => ({ status: 500, body: 'registry must not be asked' });
      mirror!.handler = serveManifest;
      const c = client({ [reg!.host]: { mirrors: [`${mirror!.base}/`] } });
      const m = await c.manifest(refOn(reg!, 'team/app:v1'), undefined);
      assert.equal(m.digest, manifestDigest);
      assert.equal(mirror!.seen.length, 1);
      assert.equal(mirror!.seen[0]!.path, '/v2/team/app/manifests/v1', 'a trailing slash on the mirror is not doubled');
      assert.equal(reg!.seen.length, 0);
    });
  });

  test('a mirror answering 5xx, or not answering at all, falls through', async () => {
    let deadBase = '';
    await withServers(1, async ([dead]) => {
      deadBase = dead!.base;
    });
    await withServers(2, async ([reg, broken]) => {
      reg!.handler = serveManifest;
      broken!.handler = () => ({ status: 503, body: '' });
      const c = client({ [reg!.host]: { mirrors: [deadBase, broken!.base] } });
      const m = await c.manifest(refOn(reg!, 'team/app:v1'), undefined);
      assert.equal(m.digest, manifestDigest);
      assert.equal(broken!.seen.length, 1);
      assert.equal(reg!.seen.length, 1);
    });
  });

  test(
    'a mirror refusing access (403) falls through to the registry, as containerd does',
    async () => {
      await withServers(2, async ([reg, mirror]) => {
        reg!.handler = serveManifest;
        mirror!.handler = () => ({ status: 403, body: JSON.stringify({ errors: [{ code: 'DENIED', message: 'not proxied' }] }) });
        const c = client({ [reg!.host]: { mirrors: [mirror!.base] } });
        const m = await c.manifest(refOn(reg!, 'team/app:v1'), undefined);
        assert.equal(m.digest, manifestDigest);
        assert.equal(reg!.seen.length, 1);
      });
    },
  );

  test('when mirror and registry both lack the image, the registry’s NotFound is reported', async () => {
    await withServers(2, async ([reg, mirror]) => {
      reg!.handler = serveManifest;
      mirror!.handler = () => ({ status: 404, body: '' });
      const c = client({ [reg!.host]: { mirrors: [mirror!.base] } });
      await rejectsWith(c.manifest(refOn(reg!, 'team/app:gone'), undefined), 'NotFound', `${reg!.host}/team/app:gone`);
    });
  });

  test('blobs come from the mirror too', async () => {
    await withServers(2, async ([reg, mirror]) => {
      const blob = Buffer.from('layer bytes');
      reg!.handler = () => ({ status: 500, body: '' });
      mirror!.handler = (req) => (req.path === `/v2/team/app/blobs/${sha256(blob)}` ? { body: blob } : { status: 404, body: '' });
      const c = client({ [reg!.host]: { mirrors: [mirror!.base] } });
      const s = await c.blob(refOn(reg!, 'team/app:v1'), sha256(blob), blob.length, undefined);
      assert.deepEqual(await readAll(s), blob);
      assert.equal(reg!.seen.length, 0);
    });
  });
});

describe('RegistryClient.blob streams only verified bytes', () => {
  const blob = Buffer.from('0123456789abcdefghijklmnopqrstuvwxyz'.repeat(3000));
  const digest = sha256(blob);

  test('correct bytes pass, from GET /v2/<path>/blobs/<digest>', async () => {
    await withServers(1, async ([reg]) => {
      reg!.handler = (req) => (req.path === `/v2/team/app/blobs/${digest}` ? { body: blob } : { status: 404, body: '' });
      const s = await client().blob(refOn(reg!, 'team/app:v1'), digest, blob.length, undefined);
      assert.deepEqual(await readAll(s), blob);
    });
  });

  test('a flipped byte makes the stream error with "does not match its digest"', async () => {
    await withServers(1, async ([reg]) => {
      const bad = Buffer.from(blob);
      bad[1234] = bad[1234]! ^ 0x01;
      reg!.handler = () => ({ body: bad });
      const s = await client().blob(refOn(reg!, 'team/app:v1'), digest, blob.length, undefined);
      await rejectsWith(readAll(s), 'InvalidArgument', 'does not match its digest', digest, sha256(bad).slice('sha256:'.length));
    });
  });

  test('a short body errors with "has N bytes, not the M"', async () => {
    await withServers(1, async ([reg]) => {
      const short = blob.subarray(0, blob.length - 100);
      reg!.handler = () => ({ body: short, chunked: true });
      const s = await client().blob(refOn(reg!, 'team/app:v1'), digest, blob.length, undefined);
      await rejectsWith(readAll(s), 'InvalidArgument', `has ${short.length} bytes, not the ${blob.length}`);
    });
  });

  test('a body longer than the descriptor’s size errors', async () => {
    await withServers(1, async ([reg]) => {
      reg!.handler = () => ({ body: Buffer.concat([blob, Buffer.from('extra')]) });
      const s = await client().blob(refOn(reg!, 'team/app:v1'), digest, blob.length, undefined);
      await rejectsWith(readAll(s), 'InvalidArgument', `larger than the ${blob.length} bytes`);
    });
  });

  test('a connection cut mid-blob makes the stream error with Unavailable', async () => {
    await withServers(1, async ([reg]) => {
      reg!.handler = () => ({ body: blob.subarray(0, 1000), cutLength: blob.length });
      const s = await client().blob(refOn(reg!, 'team/app:v1'), digest, blob.length, undefined);
      await rejectsWith(readAll(s), 'Unavailable', digest, reg!.host);
    });
  });

  test('a missing blob → NotFound naming the digest', async () => {
    await withServers(1, async ([reg]) => {
      reg!.handler = () => ({ status: 404, body: '' });
      await rejectsWith(client().blob(refOn(reg!, 'team/app:v1'), digest, blob.length, undefined), 'NotFound', digest);
    });
  });

  test('blob requests go through the same auth', async () => {
    await withServers(1, async ([reg]) => {
      reg!.handler = (req) =>
        req.headers.authorization === `Basic ${b64('u:p')}` ? { body: blob } : { status: 401, headers: { 'www-authenticate': 'Basic realm="r"' }, body: '' };
      const s = await client().blob(refOn(reg!, 'team/app:v1'), digest, blob.length, { username: 'u', password: 'p' });
      assert.deepEqual(await readAll(s), blob);
    });
  });
});

describe('parseChallenge', () => {
  test('Bearer with quoted params', () => {
    assert.deepEqual(parseChallenge('Bearer realm="https://auth.docker.io/token",service="registry.docker.io",scope="repository:library/busybox:pull"'), {
      scheme: 'bearer',
      params: { realm: 'https://auth.docker.io/token', service: 'registry.docker.io', scope: 'repository:library/busybox:pull' },
    });
  });
  test('unquoted params and spaces around separators', () => {
    assert.deepEqual(parseChallenge('Bearer realm=https://a.test/token, service=reg.test'), {
      scheme: 'bearer',
      params: { realm: 'https://a.test/token', service: 'reg.test' },
    });
  });
  test('a quoted value may hold commas and escaped quotes', () => {
    const c = parseChallenge('Bearer realm="https://a.test/t",scope="repository:a:pull,push",error="say \\"hi\\""');
    assert.equal(c?.params.scope, 'repository:a:pull,push');
    assert.equal(c?.params.error, 'say "hi"');
  });
  test('scheme and parameter names are case-insensitive', () => {
    assert.deepEqual(parseChallenge('BASIC Realm="Registry"'), { scheme: 'basic', params: { realm: 'Registry' } });
    assert.equal(parseChallenge('bearer realm="x"')?.scheme, 'bearer');
  });
  test('Basic without params', () => {
    assert.deepEqual(parseChallenge('Basic'), { scheme: 'basic', params: {} });
  });
  test('unknown schemes and empty headers give undefined', () => {
    assert.equal(parseChallenge('Negotiate abc'), undefined);
    assert.equal(parseChallenge('Digest realm="x", nonce="y"'), undefined);
    assert.equal(parseChallenge(''), undefined);
  });
});
