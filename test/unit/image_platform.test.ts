import assert from 'node:assert/strict';
import { describe, test } from 'node:test';

import { type Descriptor, mediaTypes, nodePlatform, type Platform, selectPlatform } from '../../pkg/image/media_types.js';

// Which manifest of a multi-platform image the node pulls: the wrong choice
// is an "exec format error" in the container, or an attestation blob pulled
// as if it were an image.

let n = 0;
function entry(platform: Platform | undefined, mediaType: string = mediaTypes.ociManifest, annotations?: Record<string, string>): Descriptor {
  n++;
  const d: Descriptor = { mediaType, digest: `sha256:${n.toString(16).padStart(64, '0')}`, size: 500 + n };
  if (platform) d.platform = platform;
  if (annotations) d.annotations = annotations;
  return d;
}

const linux = (architecture: string, variant?: string): Platform => (variant === undefined ? { os: 'linux', architecture } : { os: 'linux', architecture, variant });

describe('nodePlatform names the node as OCI does', () => {
  test('x64 is linux/amd64 without a variant', () => {
    assert.deepEqual(nodePlatform('x64'), { os: 'linux', architecture: 'amd64' });
  });
  test('arm64 is linux/arm64/v8', () => {
    assert.deepEqual(nodePlatform('arm64'), { os: 'linux', architecture: 'arm64', variant: 'v8' });
  });
  test('arm is linux/arm/v7', () => {
    assert.deepEqual(nodePlatform('arm'), { os: 'linux', architecture: 'arm', variant: 'v7' });
  });
  test('ia32 is linux/386', () => {
    assert.deepEqual(nodePlatform('ia32'), { os: 'linux', architecture: '386' });
  });
  test('other Node arches pass through', () => {
    assert.deepEqual(nodePlatform('riscv64'), { os: 'linux', architecture: 'riscv64' });
    assert.deepEqual(nodePlatform('s390x'), { os: 'linux', architecture: 's390x' });
  });
  test('the default is this process’s arch', () => {
    assert.deepEqual(nodePlatform(), nodePlatform(process.arch));
  });
});

describe('selectPlatform', () => {
  const arm64 = entry(linux('arm64', 'v8'));
  const armv7 = entry(linux('arm', 'v7'));
  const amd64 = entry(linux('amd64'));
  const index = [arm64, armv7, amd64];

  test('amd64 is picked from an index of arm64, arm/v7, amd64', () => {
    assert.equal(selectPlatform(index, nodePlatform('x64')), amd64);
  });

  test('arm64 node (v8) picks arm64/v8, not arm/v7', () => {
    assert.equal(selectPlatform(index, nodePlatform('arm64')), arm64);
  });

  test('arm64 node picks an arm64 entry that has no variant', () => {
    const plain = entry(linux('arm64'));
    assert.equal(selectPlatform([armv7, plain, amd64], nodePlatform('arm64')), plain);
  });

  test('arm64 wanted without a variant picks an arm64/v8 entry', () => {
    assert.equal(selectPlatform(index, linux('arm64')), arm64);
  });

  test('arm/v7 node picks v7 over v6, in either order', () => {
    const v6 = entry(linux('arm', 'v6'));
    const v7 = entry(linux('arm', 'v7'));
    assert.equal(selectPlatform([v6, v7], nodePlatform('arm')), v7);
    assert.equal(selectPlatform([v7, v6], nodePlatform('arm')), v7);
  });

  test('arm/v6 node never picks a v7 image (it cannot run it)', () => {
    const v7 = entry(linux('arm', 'v7'));
    assert.equal(selectPlatform([v7], linux('arm', 'v6')), undefined);
  });

  test('arm/v6 node picks v6 from v7 and v6', () => {
    const v6 = entry(linux('arm', 'v6'));
    const v7 = entry(linux('arm', 'v7'));
    assert.equal(selectPlatform([v7, v6], linux('arm', 'v6')), v6);
  });

  test(
    'arm/v7 node runs an arm/v6-only image, as containerd’s platform matcher allows',
    () => {
      const v6 = entry(linux('arm', 'v6'));
      assert.equal(selectPlatform([amd64, v6], nodePlatform('arm')), v6);
    },
  );

  test('an entry without a variant serves a node that wants one', () => {
    const plainArm = entry(linux('arm'));
    assert.equal(selectPlatform([amd64, plainArm], nodePlatform('arm')), plainArm);
  });

  test('an exact variant is preferred over an entry without one', () => {
    const plainArm = entry(linux('arm'));
    const v7 = entry(linux('arm', 'v7'));
    assert.equal(selectPlatform([plainArm, v7], nodePlatform('arm')), v7);
  });

  test('attestation entries (platform unknown/unknown) are never picked', () => {
    const att = entry({ os: 'unknown', architecture: 'unknown' }, mediaTypes.ociManifest, {
      'vnd.docker.reference.type': 'attestation-manifest',
      'vnd.docker.reference.digest': amd64.digest,
    });
    assert.equal(selectPlatform([att, amd64], nodePlatform('x64')), amd64);
    assert.equal(selectPlatform([att], nodePlatform('x64')), undefined);
  });

  test('an entry that is not a manifest (a nested index, a blob) is never picked, even for the right platform', () => {
    const nestedIndex = entry(linux('amd64'), mediaTypes.ociIndex);
    const dockerList = entry(linux('amd64'), mediaTypes.dockerList);
    const inToto = entry(linux('amd64'), 'application/vnd.in-toto+json');
    assert.equal(selectPlatform([nestedIndex, dockerList, inToto], nodePlatform('x64')), undefined);
    assert.equal(selectPlatform([nestedIndex, inToto, amd64], nodePlatform('x64')), amd64);
  });

  test('Docker schema-2 manifests are picked like OCI ones', () => {
    const docker = entry(linux('amd64'), mediaTypes.dockerManifest);
    assert.equal(selectPlatform([arm64, docker], nodePlatform('x64')), docker);
  });

  test('an entry without a platform is never picked', () => {
    const bare = entry(undefined);
    assert.equal(selectPlatform([bare], nodePlatform('x64')), undefined);
  });

  test('another OS with the same architecture is not picked', () => {
    const windows = entry({ os: 'windows', architecture: 'amd64', 'os.version': '10.0.17763.1' });
    assert.equal(selectPlatform([windows], nodePlatform('x64')), undefined);
    assert.equal(selectPlatform([windows, amd64], nodePlatform('x64')), amd64);
  });

  test('no match → undefined', () => {
    assert.equal(selectPlatform(index, linux('s390x')), undefined);
    assert.equal(selectPlatform([], nodePlatform('x64')), undefined);
    assert.equal(selectPlatform([arm64, armv7], nodePlatform('x64')), undefined);
  });

  test('the first of equal candidates wins, so the choice is stable', () => {
    const a = entry(linux('amd64'));
    const b = entry(linux('amd64'));
    assert.equal(selectPlatform([a, b], nodePlatform('x64')), a);
  });
});
