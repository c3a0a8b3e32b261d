import assert from 'node:assert/strict';
import { describe, test } from 'node:test';

import { imageLocation, pullAuthsFor } from '../../pkg/node/pull_secrets.js';

// Which imagePullSecrets entry an image's pull uses, as kubelet's keyring matches them.

const dockerconfigjson = (auths: Record<string, unknown>) => ({ data: { '.dockerconfigjson': Buffer.from(JSON.stringify({ auths })) } });

describe('image pull secrets', () => {
  test("an image's registry host and repository, with Docker Hub's defaults", () => {
    assert.deepEqual(imageLocation('busybox'), { host: 'docker.io', path: 'library/busybox' });
    assert.deepEqual(imageLocation('team/app:1.0'), { host: 'docker.io', path: 'team/app' });
    assert.deepEqual(imageLocation('registry:5000/team/app:1.0'), { host: 'registry:5000', path: 'team/app' });
    assert.deepEqual(imageLocation('reg.example/app@sha256:abc'), { host: 'reg.example', path: 'app' });
  });

  test('entries match by host; a path entry only its repositories, the longest first; auth is decoded', () => {
    const secrets = [
      dockerconfigjson({
        'https://reg.example/v2/': { auth: Buffer.from('any:one').toString('base64') },
        'reg.example/team': { username: 'team', password: 'pw' },
        'other.example': { username: 'x', password: 'y' },
      }),
    ];
    assert.deepEqual(pullAuthsFor('reg.example/team/app:1', secrets).map((a) => [a.username, a.password]), [
      ['team', 'pw'],
      ['any', 'one'],
    ]);
    assert.deepEqual(pullAuthsFor('reg.example/teams/app', secrets).map((a) => a.username), ['any'], 'a path is a whole-segment prefix');
    assert.deepEqual(pullAuthsFor('third.example/app', secrets), []);
  });

  test("Docker Hub's historical keys and the legacy dockercfg format", () => {
    const legacy = { data: { '.dockercfg': Buffer.from(JSON.stringify({ 'https://index.docker.io/v1/': { username: 'hub', password: 'h' } })) } };
    assert.deepEqual(pullAuthsFor('busybox', [legacy]).map((a) => [a.serverAddress, a.username]), [['docker.io', 'hub']]);
  });

  test('malformed secret content gives no credentials, not an error', () => {
    assert.deepEqual(pullAuthsFor('busybox', [{ data: { '.dockerconfigjson': Buffer.from('{not json') } }]), []);
  });
});
