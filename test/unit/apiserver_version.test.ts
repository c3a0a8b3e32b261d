import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { describe, test } from 'node:test';

import { KubeConfig } from '@kubernetes/client-node';

import { createLogger } from '../../pkg/log/logger.js';
import { isSupported, logServerVersion, parseServerVersion, supportedApiServers, supportedRange } from '../../pkg/node/apiserver_version.js';
import { apiOf } from '../../pkg/node/kube_api.js';
import { findRepoRoot } from '../lib/proto_compare.js';

// The kube-apiserver releases the node half supports (v1.34 to v1.37): stated in
// one place, in step with the releases the cluster tests run against, and logged
// at start with the server's own version — a warning, never a refusal, outside.

describe('supported kube-apiserver releases', () => {
  test('the range is the four latest minors, and its ends are the releases the cluster tests run against (versions.json)', () => {
    const v = JSON.parse(readFileSync(`${findRepoRoot(import.meta.url)}/versions.json`, 'utf8')) as { kubernetes: string; kubernetesOldest: string };
    const minorOf = (s: string): number => Number(/^v1\.(\d+)\./.exec(s)![1]);
    assert.equal(minorOf(v.kubernetes), supportedApiServers.newest.minor, 'versions.json "kubernetes" is the newest supported minor');
    assert.equal(minorOf(v.kubernetesOldest), supportedApiServers.oldest.minor, 'versions.json "kubernetesOldest" is the oldest supported minor');
    assert.equal(supportedApiServers.newest.minor - supportedApiServers.oldest.minor, 3);
    assert.equal(supportedRange, 'v1.34 to v1.37');
  });

  test("/version's answer: gitVersion, else major and minor (managed clusters say \"34+\")", () => {
    assert.deepEqual(parseServerVersion({ gitVersion: 'v1.34.4', major: '1', minor: '34' }), { gitVersion: 'v1.34.4', major: 1, minor: 34 });
    assert.deepEqual(parseServerVersion({ gitVersion: 'v1.35.0-gke.1', major: '1', minor: '35+' }), { gitVersion: 'v1.35.0-gke.1', major: 1, minor: 35 });
    assert.deepEqual(parseServerVersion({ gitVersion: 'custom', major: '1', minor: '36+' }), { gitVersion: 'custom', major: 1, minor: 36 });
    assert.equal(parseServerVersion({ gitVersion: 'custom' }), undefined);
    assert.deepEqual(['v1.33.9', 'v1.34.0', 'v1.37.2', 'v1.38.0', 'v2.34.0'].map((g) => isSupported(parseServerVersion({ gitVersion: g })!)), [false, true, true, false, false]);
  });

  async function logged(version: unknown): Promise<string[]> {
    const server: Server = createServer((req, res) => {
      if (req.url !== '/version') return void res.writeHead(404).end();
      res.writeHead(200, { 'content-type': 'application/json' }).end(JSON.stringify(version));
    });
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
    try {
      const kc = new KubeConfig();
      kc.loadFromOptions({
        clusters: [{ name: 'c', server: `http://127.0.0.1:${(server.address() as AddressInfo).port}`, skipTLSVerify: true }],
        users: [{ name: 'u' }],
        contexts: [{ name: 'x', cluster: 'c', user: 'u' }],
        currentContext: 'x',
      });
      const lines: string[] = [];
      await logServerVersion(apiOf(kc), createLogger({ level: 'info', component: 'test', write: (l) => void lines.push(l) }));
      return lines;
    } finally {
      server.close();
    }
  }

  test('at start the server version is logged with the range: info inside it, a warning outside', async () => {
    const inside = await logged({ major: '1', minor: '34', gitVersion: 'v1.34.4' });
    assert.equal(inside.length, 1);
    assert.match(inside[0]!, /level=info .*version=v1\.34\.4 .*supported="v1\.34 to v1\.37"/);
    const outside = await logged({ major: '1', minor: '31', gitVersion: 'v1.31.0' });
    assert.match(outside[0]!, /level=warn .*outside the supported range.*version=v1\.31\.0/);
    const unreadable = await logged({ gitVersion: 'who-knows' });
    assert.match(unreadable[0]!, /level=warn .*does not say its version/);
  });
});
