import assert from 'node:assert/strict';
import { describe, test } from 'node:test';

import { isDomainError } from '../../pkg/errdefs/errors.js';
import { asImageId, formatReference, type ImageReference, parseReference, repositoryOf, tagReference } from '../../pkg/image/reference.js';

// Image references as kubelet and crictl hand them to the node: every short
// form must land on the same canonical name containerd and docker give it, or
// a pod's image would not be found under the name the user pulled it by.

const hex64 = 'a3ed95caeb02ffe68cdd9fd84406680ae93d633cb16422d00e8a7c22955b46d4';
const digest = `sha256:${hex64}`;

const canonical = (ref: string): string => formatReference(parseReference(ref));

/** Asserts that parsing `ref` throws InvalidArgument naming `field`, with a message mentioning the reference. */
function rejects(ref: string, field = 'image', mention?: RegExp): void {
  assert.throws(
    () => parseReference(ref, field),
    (e: unknown) => {
      assert.ok(isDomainError(e), `not a DomainError: ${String(e)}`);
      assert.equal(e.code, 'InvalidArgument');
      assert.equal(e.field, field);
      assert.ok(e.message.includes(`"${ref}"`), `message does not quote the reference: ${e.message}`);
      if (mention) assert.match(e.message, mention);
      return true;
    },
    `parseReference(${JSON.stringify(ref)}) should be rejected`,
  );
}

describe('parseReference normalises as containerd/docker do', () => {
  const cases: Array<[string, string]> = [
    ['busybox', 'docker.io/library/busybox:latest'],
    ['busybox:1.36', 'docker.io/library/busybox:1.36'],
    ['library/busybox', 'docker.io/library/busybox:latest'],
    ['docker.io/busybox', 'docker.io/library/busybox:latest'],
    ['docker.io/library/busybox:latest', 'docker.io/library/busybox:latest'],
    ['docker.io/x/y', 'docker.io/x/y:latest'],
    ['x/y:t', 'docker.io/x/y:t'],
    ['index.docker.io/busybox', 'docker.io/library/busybox:latest'],
    ['index.docker.io/x/y:t', 'docker.io/x/y:t'],
    ['quay.io/a/b', 'quay.io/a/b:latest'],
    ['registry.k8s.io/pause:3.9', 'registry.k8s.io/pause:3.9'],
    ['localhost/a', 'localhost/a:latest'],
    ['localhost:5000/a/b:t', 'localhost:5000/a/b:t'],
    ['192.168.1.2:5000/a', '192.168.1.2:5000/a:latest'],
    ['192.168.1.2:5000/a/b/c:v1.2.3', '192.168.1.2:5000/a/b/c:v1.2.3'],
    ['my-registry.example.com:443/team/app', 'my-registry.example.com:443/team/app:latest'],
    ['a/b-c__d.e/f', 'docker.io/a/b-c__d.e/f:latest'],
  ];
  for (const [input, want] of cases) {
    test(`${input} → ${want}`, () => {
      assert.equal(canonical(input), want);
    });
  }

  test('the parts are split as a registry client needs them', () => {
    assert.deepEqual(parseReference('busybox'), { domain: 'docker.io', path: 'library/busybox', tag: 'latest', digest: undefined });
    assert.deepEqual(parseReference('localhost:5000/a/b:t'), { domain: 'localhost:5000', path: 'a/b', tag: 't', digest: undefined });
    assert.deepEqual(parseReference('192.168.1.2:5000/a'), { domain: '192.168.1.2:5000', path: 'a', tag: 'latest', digest: undefined });
  });

  test('a host with a port and no tag: the port is not taken for a tag', () => {
    const r = parseReference('localhost:5000/app');
    assert.equal(r.domain, 'localhost:5000');
    assert.equal(r.path, 'app');
    assert.equal(r.tag, 'latest');
    const r2 = parseReference('10.0.0.1:5000/team/app');
    assert.equal(r2.domain, '10.0.0.1:5000');
    assert.equal(r2.path, 'team/app');
    assert.equal(r2.tag, 'latest');
  });

  test('a one-component name on another registry gets no library/ prefix', () => {
    assert.equal(parseReference('quay.io/app').path, 'app');
    assert.equal(parseReference('localhost:5000/app').path, 'app');
  });

  test('name@sha256:<64 hex> is pinned to the digest, with no :latest added', () => {
    const r = parseReference(`busybox@${digest}`);
    assert.equal(r.domain, 'docker.io');
    assert.equal(r.path, 'library/busybox');
    assert.equal(r.tag, undefined);
    assert.equal(r.digest, digest);
    assert.equal(formatReference(r), `docker.io/library/busybox@${digest}`);
  });

  test('name:tag@digest keeps both the tag and the digest', () => {
    const r = parseReference(`quay.io/a/b:v1@${digest}`);
    assert.equal(r.tag, 'v1');
    assert.equal(r.digest, digest);
    assert.equal(formatReference(r), `quay.io/a/b:v1@${digest}`);
  });

  test('a registry with a port, a tag and a digest', () => {
    const r = parseReference(`localhost:5000/a/b:t@${digest}`);
    assert.deepEqual(r, { domain: 'localhost:5000', path: 'a/b', tag: 't', digest });
  });

  test('the canonical form parses back to itself', () => {
    for (const ref of ['busybox', 'localhost:5000/a/b:t', `x/y:z@${digest}`, `quay.io/a@${digest}`]) {
      const once = canonical(ref);
      assert.equal(canonical(once), once);
    }
  });
});

describe('parseReference rejects what a registry would', () => {
  test('uppercase in the repository', () => {
    rejects('Busybox');
    rejects('docker.io/Library/busybox');
    rejects('quay.io/a/B');
  });
  test('a bad tag', () => {
    rejects('busybox:-bad', 'image', /not a valid tag/);
    rejects('busybox:a+b', 'image', /not a valid tag/);
    rejects(`busybox:${'t'.repeat(129)}`, 'image', /not a valid tag/);
    rejects('busybox:', 'image', /not a valid tag/);
  });
  test('a tag of 128 characters is the longest allowed', () => {
    assert.equal(parseReference(`busybox:${'t'.repeat(128)}`).tag, 't'.repeat(128));
  });
  test('a bad digest', () => {
    rejects('busybox@sha256:abc', 'image', /digest/);
    rejects(`busybox@sha256:${hex64.slice(1)}`, 'image', /sha256 digest/);
    rejects(`busybox@sha256:${hex64.toUpperCase()}`, 'image', /sha256 digest/);
    rejects(`busybox@${hex64}`, 'image', /digest/);
    rejects('busybox@', 'image', /digest/);
  });
  test('empty', () => {
    rejects('', 'image', /empty/);
  });
  test('a ".." or empty path component', () => {
    rejects('a/../b');
    rejects('quay.io/../etc');
    rejects('a//b');
    rejects('a/');
    rejects('/a');
    rejects('a..b');
  });
  test('separators at the ends of a component', () => {
    rejects('-a');
    rejects('a-');
    rejects('a_');
    rejects('a___b');
  });
  test('whitespace', () => {
    rejects('busy box');
    rejects(' busybox');
  });
  test('a name that is only a registry host', () => {
    rejects('quay.io/');
  });
  test('an unusable registry host', () => {
    rejects('bad_host.io/a', 'image', /registry host/);
  });
  test('the error names the field the caller passes, and defaults to "image"', () => {
    rejects('BAD', 'image');
    rejects('BAD', 'image.image');
    assert.throws(
      () => parseReference(''),
      (e: unknown) => isDomainError(e) && e.code === 'InvalidArgument' && e.field === 'image',
    );
  });
  test('an absurdly long reference', () => {
    rejects(`a/${'b'.repeat(5000)}`, 'image', /too long/);
  });
  test('a name longer than the grammar allows (255) is refused before any registry is asked', () => {
    rejects(`registry.local:5000/${'z'.repeat(300)}:latest`, 'image', /at most 255/);
    assert.equal(parseReference(`registry.local:5000/${'z'.repeat(200)}`).path, 'z'.repeat(200));
  });
});

describe('formatReference, tagReference, repositoryOf', () => {
  const r: ImageReference = { domain: 'localhost:5000', path: 'a/b', tag: 't', digest: undefined };
  test('repositoryOf is domain/path', () => {
    assert.equal(repositoryOf(r), 'localhost:5000/a/b');
    assert.equal(repositoryOf(parseReference('busybox')), 'docker.io/library/busybox');
  });
  test('formatReference writes tag and digest only when present', () => {
    assert.equal(formatReference(r), 'localhost:5000/a/b:t');
    assert.equal(formatReference({ ...r, tag: undefined }), 'localhost:5000/a/b');
    assert.equal(formatReference({ ...r, tag: undefined, digest }), `localhost:5000/a/b@${digest}`);
    assert.equal(formatReference({ ...r, digest }), `localhost:5000/a/b:t@${digest}`);
  });
  test('tagReference is the CRI repo_tag form, undefined for a digest-only reference', () => {
    assert.equal(tagReference(parseReference('busybox')), 'docker.io/library/busybox:latest');
    assert.equal(tagReference(parseReference(`busybox:1@${digest}`)), 'docker.io/library/busybox:1');
    assert.equal(tagReference(parseReference(`busybox@${digest}`)), undefined);
  });
});

describe('asImageId', () => {
  test('a full id "sha256:<hex>" gives the hex', () => {
    assert.equal(asImageId(digest), hex64);
  });
  test('bare hex of 64 digits', () => {
    assert.equal(asImageId(hex64), hex64);
  });
  test('a 12-hex prefix, with or without sha256:', () => {
    assert.equal(asImageId(hex64.slice(0, 12)), hex64.slice(0, 12));
    assert.equal(asImageId(`sha256:${hex64.slice(0, 12)}`), hex64.slice(0, 12));
  });
  test('shorter than 12 hex digits is not an id', () => {
    assert.equal(asImageId(hex64.slice(0, 11)), undefined);
    assert.equal(asImageId('sha256:'), undefined);
    assert.equal(asImageId(''), undefined);
  });
  test('longer than 64 hex digits is not an id', () => {
    assert.equal(asImageId(`${hex64}0`), undefined);
  });
  test('not hex', () => {
    assert.equal(asImageId('busybox'), undefined);
    assert.equal(asImageId('g'.repeat(12)), undefined);
    assert.equal(asImageId(hex64.toUpperCase()), undefined);
    assert.equal(asImageId(`sha512:${hex64}`), undefined);
    assert.equal(asImageId(`docker.io/library/busybox@${digest}`), undefined);
  });
});
