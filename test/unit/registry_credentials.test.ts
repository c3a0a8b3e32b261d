import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';

import { isDomainError } from '../../pkg/errdefs/errors.js';
import { silentLogger } from '../../pkg/log/logger.js';
import { parseReference } from '../../pkg/image/reference.js';
import { credentialIdentity, RegistryClient } from '../../pkg/image/registry_client.js';
import { FakeRegistry, layerOf } from '../lib/fake_registry.js';

// Registry credentials are cached per credential, never reused for another
// one: after an authenticated pull of a private image succeeded, the same
// client (the runtime's one) must refuse an anonymous pull of it, and a pull
// with wrong credentials, instead of sending the earlier token along.

describe('registry auth cached per credential', () => {
  const reg = new FakeRegistry();
  let image: string;
  before(async () => {
    reg.bearer = { user: 'alice', password: 's3cret' };
    await reg.addImage('private/app', 'v1', [await layerOf({ 'hello.txt': 'hi\n' })]);
    image = `${await reg.listen('127.0.0.1')}/private/app:v1`;
  });
  after(() => reg.close());

  const denied = async (p: Promise<unknown>, what: string): Promise<void> => {
    const e = await p.then(
      () => assert.fail(`${what} succeeded`),
      (err: unknown) => err,
    );
    assert.ok(isDomainError(e), String(e));
    assert.equal(e.code, 'PermissionDenied', e.message);
  };

  test('an anonymous pull after an authenticated one is refused; the credentials still work; wrong ones never borrow the token', async () => {
    const client = new RegistryClient({ hosts: {}, log: silentLogger });
    const ref = parseReference(image, 'image');
    const alice = { username: 'alice', password: 's3cret' };
    await denied(client.manifest(ref, undefined), 'an anonymous pull before any');
    const m = await client.manifest(ref, alice);
    assert.ok(m.bytes.length > 0);
    const before = reg.tokenRequests.length;
    await denied(client.manifest(ref, undefined), 'an anonymous pull after an authenticated one');
    await denied(client.manifest(ref, { username: 'alice', password: 'wrong' }), 'a pull with a wrong password');
    await denied(client.manifest(ref, { username: 'mallory', password: 's3cret' }), 'a pull as another user');
    await denied(client.manifest(ref, {}), 'a pull with empty credentials');
    // The rightful client's token is still cached: no new token request for it.
    const requests = reg.tokenRequests.length;
    await client.manifest(ref, alice);
    assert.equal(reg.tokenRequests.length, requests, 'the token of the right credentials was not reused');
    assert.ok(reg.tokenRequests.slice(before).every((r) => r.ok === false), 'a refused pull got a token');
    // A blob, too.
    const cfg = (JSON.parse(m.bytes.toString()) as { config: { digest: string; size: number } }).config;
    await denied(client.blob(ref, cfg.digest, cfg.size, undefined), 'an anonymous blob fetch');
  });

  test('credential identity: a hash, anonymous its own key, every field counts', () => {
    assert.equal(credentialIdentity(undefined), 'anonymous');
    assert.equal(credentialIdentity({}), 'anonymous');
    const a = credentialIdentity({ username: 'u', password: 'p' });
    assert.notEqual(a, credentialIdentity({ username: 'u', password: 'q' }));
    assert.notEqual(a, credentialIdentity({ username: 'u', password: 'p', identityToken: 't' }));
    assert.notEqual(credentialIdentity({ registryToken: 'x' }), credentialIdentity({ identityToken: 'x' }));
    assert.ok(!a.includes('p') || /^[0-9a-f]{64}$/.test(a));
    assert.match(a, /^[0-9a-f]{64}$/);
  });
});
