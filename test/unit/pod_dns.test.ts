import assert from 'node:assert/strict';
import { describe, test } from 'node:test';

import { parseManifest } from '../../pkg/node/pod_manifest.js';
import { parseResolvConf, sandboxDns } from '../../pkg/node/pod_dns.js';

// A pod's resolv.conf as kubelet makes it, by dnsPolicy and dnsConfig.

const node = { clusterDNS: ['10.96.0.10'], clusterDomain: 'cluster.local', host: parseResolvConf('nameserver 10.0.2.3\nsearch example.org\noptions edns0\n') };
const pod = (spec: string) => parseManifest(`apiVersion: v1\nkind: Pod\nmetadata: { name: p, namespace: shop }\nspec:\n${spec}  containers: [{ name: c, image: b }]\n`, '/m/p.yaml')[0]!;

describe('pod DNS', () => {
  test('ClusterFirst: the cluster DNS, the namespace searches then the node\'s, ndots:5', () => {
    assert.deepEqual(sandboxDns(pod(''), node).config, { servers: ['10.96.0.10'], searches: ['shop.svc.cluster.local', 'svc.cluster.local', 'cluster.local', 'example.org'], options: ['ndots:5'] });
  });
  test("on the node's network ClusterFirst is Default, unless ClusterFirstWithHostNet", () => {
    assert.deepEqual(sandboxDns(pod('  hostNetwork: true\n'), node), {});
    assert.deepEqual(sandboxDns(pod('  hostNetwork: true\n  dnsPolicy: ClusterFirstWithHostNet\n'), node).config?.servers, ['10.96.0.10']);
  });
  test('without cluster DNS configured: the node\'s resolv.conf and kubelet\'s warning', () => {
    const r = sandboxDns(pod(''), { ...node, clusterDNS: [] });
    assert.equal(r.config, undefined);
    assert.match(r.warning!, /Falling back to "Default" policy/);
  });
  test('None takes dnsConfig alone; dnsConfig merges onto the others', () => {
    assert.deepEqual(sandboxDns(pod('  dnsPolicy: None\n  dnsConfig: { nameservers: [1.1.1.1], searches: [a.example], options: [{ name: ndots, value: "2" }] }\n'), node).config, { servers: ['1.1.1.1'], searches: ['a.example'], options: ['ndots:2'] });
    assert.deepEqual(sandboxDns(pod('  dnsConfig: { options: [{ name: ndots, value: "1" }, { name: single-request }] }\n'), node).config?.options, ['ndots:1', 'single-request']);
    assert.deepEqual(sandboxDns(pod('  dnsPolicy: Default\n  dnsConfig: { searches: [b.example] }\n'), node).config, { servers: ['10.0.2.3'], searches: ['example.org', 'b.example'], options: ['edns0'] });
  });
  test('bad DNS settings are refused by field', () => {
    assert.throws(() => pod('  dnsPolicy: None\n'), /spec\.dnsConfig/);
    assert.throws(() => pod('  dnsPolicy: Sometimes\n'), /spec\.dnsPolicy/);
    assert.throws(() => pod('  dnsConfig: { nameservers: [a, b, c, d] }\n'), /spec\.dnsConfig\.nameservers/);
  });
});
