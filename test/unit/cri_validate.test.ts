import assert from 'node:assert/strict';
import { describe, test } from 'node:test';

import { checkAuthConfig, checkContainerConfig, checkDnsConfig, checkPodSandboxConfig, checkSysctls } from '../../pkg/cri/validate.js';
import { type DomainError, isCode } from '../../pkg/errdefs/errors.js';

// What a client's strings may be where they reach paths, CNI_ARGS, resolv.conf
// and command lines: refused with INVALID_ARGUMENT naming the field, while
// everything Kubernetes, kubelet and critest really send is accepted.

type PodConfig = Parameters<typeof checkPodSandboxConfig>[0];
type ContainerConfig = Parameters<typeof checkContainerConfig>[0];

const pod = (o: Omit<Partial<PodConfig>, 'metadata'> & { metadata?: Partial<NonNullable<PodConfig['metadata']>> } = {}): PodConfig =>
  ({
    hostname: '',
    logDirectory: '/var/log/pods/default_web-0_0b5d7a3c-1f2e-4c1b-9a55-6f1e2f0c9d11',
    dnsConfig: null,
    portMappings: [],
    labels: {},
    annotations: {},
    linux: null,
    windows: null,
    ...o,
    metadata: { name: 'web-0', namespace: 'default', uid: '0b5d7a3c-1f2e-4c1b-9a55-6f1e2f0c9d11', attempt: 0, ...o.metadata },
  }) as PodConfig;

const ctr = (name: string, logPath: string): ContainerConfig => ({ metadata: { name, attempt: 0 }, logPath }) as unknown as ContainerConfig;

function refused(f: () => void, field: string): void {
  try {
    f();
  } catch (e: unknown) {
    assert.ok(isCode(e, 'InvalidArgument'), `not InvalidArgument: ${String(e)}`);
    assert.equal((e as DomainError).field, field);
    return;
  }
  assert.fail(`accepted; expected a refusal naming ${field}`);
}

describe('CRI input validation', () => {
  test("what kubelet and critest send passes: DNS names, critest's upper-case names, log folders, DNS config, sysctls", () => {
    checkPodSandboxConfig(pod());
    checkPodSandboxConfig(pod({ metadata: { name: 'PodSandbox-with-log-directory-5d1c2b7e-96a4-4a0d-8d3e-1a2b3c4d5e6f', namespace: 'cri-test-namespace5d1c2b7e-96a4-4a0d-8d3e-1a2b3c4d5e6f', uid: 'cri-test-uid5d1c2b7e' } }));
    checkPodSandboxConfig(pod({ metadata: { name: 'kube-apiserver-node.example.com' }, logDirectory: '' }));
    checkPodSandboxConfig(pod({ dnsConfig: { servers: ['10.96.0.10', 'fd00::a'], searches: ['default.svc.cluster.local', 'svc.cluster.local', 'cluster.local.'], options: ['ndots:5', 'edns0', 'timeout:1'] } }));
    checkPodSandboxConfig(pod({ portMappings: [{ protocol: 'TCP', containerPort: 80, hostPort: 8080, hostIp: '' }, { protocol: 'UDP', containerPort: 53, hostPort: 53, hostIp: '127.0.0.1' }] }));
    checkSysctls({ 'net.ipv4.ip_unprivileged_port_start': '0', 'kernel.shm_rmid_forced': '1', 'net/ipv4/conf/eth0/forwarding': '1' }, 'config.linux.sysctls');
    checkContainerConfig(ctr('container-with-SupplementalGroupsPolicyMerge-5d1c2b7e-96a4-4a0d-8d3e-1a2b3c4d5e6f', 'container/0.log'));
    checkContainerConfig(ctr('app', ''));
    checkContainerConfig(ctr('app', '/app.log'));
  });

  test("a ';' or '=' in a pod's name, namespace or uid (CNI_ARGS injection), a NUL, a newline or a '/' are refused naming the field", () => {
    refused(() => checkPodSandboxConfig(pod({ metadata: { name: 'a;IP=10.88.0.9' } })), 'config.metadata.name');
    refused(() => checkPodSandboxConfig(pod({ metadata: { namespace: 'ns=x' } })), 'config.metadata.namespace');
    refused(() => checkPodSandboxConfig(pod({ metadata: { uid: 'u\0id' } })), 'config.metadata.uid');
    refused(() => checkPodSandboxConfig(pod({ metadata: { name: '../x' } })), 'config.metadata.name');
    refused(() => checkPodSandboxConfig(pod({ metadata: { name: 'a\nb' } })), 'config.metadata.name');
    refused(() => checkPodSandboxConfig(pod({ metadata: { name: '' } })), 'config.metadata.name');
    refused(() => checkPodSandboxConfig(pod({ metadata: { name: 'x'.repeat(254) } })), 'config.metadata.name');
    refused(() => checkPodSandboxConfig(pod({ metadata: { namespace: 'n'.repeat(64) } })), 'config.metadata.namespace');
    refused(() => checkContainerConfig(ctr('a}b', '')), 'config.metadata.name');
  });

  test('log folders and files stay where they are put', () => {
    refused(() => checkPodSandboxConfig(pod({ logDirectory: 'relative/logs' })), 'config.log_directory');
    refused(() => checkPodSandboxConfig(pod({ logDirectory: '/var/log/pods/../../../etc' })), 'config.log_directory');
    refused(() => checkPodSandboxConfig(pod({ logDirectory: '/var/log/\0pods' })), 'config.log_directory');
    refused(() => checkContainerConfig(ctr('app', '../../../etc/passwd')), 'config.log_path');
    refused(() => checkContainerConfig(ctr('app', 'a/../../b')), 'config.log_path');
    refused(() => checkContainerConfig(ctr('app', '.')), 'config.log_path');
    refused(() => checkContainerConfig(ctr('app', 'app\n.log')), 'config.log_path');
    refused(() => checkContainerConfig(ctr('app', 'y'.repeat(65536))), 'config.log_path');
    refused(() => checkContainerConfig(ctr('app', `dir/${'n'.repeat(256)}.log`)), 'config.log_path');
    refused(() => checkPodSandboxConfig(pod({ logDirectory: `/${'d/'.repeat(2100)}` })), 'config.log_directory');
  });

  test('resolv.conf gets no line of its own from a DNS setting; host_ip and protocols are what they say', () => {
    refused(() => checkDnsConfig({ servers: ['8.8.8.8\nnameserver 6.6.6.6'], searches: [], options: [] }), 'config.dns_config.servers[0]');
    refused(() => checkDnsConfig({ servers: [], searches: ['a.b', 'x\nnameserver 6.6.6.6'], options: [] }), 'config.dns_config.searches[1]');
    refused(() => checkDnsConfig({ servers: [], searches: [''], options: [] }), 'config.dns_config.searches[0]');
    refused(() => checkDnsConfig({ servers: [], searches: [], options: ['ndots:5\nnameserver 6.6.6.6'] }), 'config.dns_config.options[0]');
    refused(() => checkPodSandboxConfig(pod({ portMappings: [{ protocol: 'TCP', containerPort: 80, hostPort: 80, hostIp: '0.0.0.0;x' }] })), 'config.port_mappings[0].host_ip');
    refused(() => checkPodSandboxConfig(pod({ portMappings: [{ protocol: 99 as unknown as 'TCP', containerPort: 80, hostPort: 80, hostIp: '' }] })), 'config.port_mappings[0].protocol');
    refused(() => checkSysctls({ 'net/../../../proc/sysrq-trigger': '1' }, 'config.linux.sysctls'), 'config.linux.sysctls["net/../../../proc/sysrq-trigger"]');
  });

  test('registry credentials a header cannot carry are refused, not reported as an unreachable registry', () => {
    checkAuthConfig({ auth: Buffer.from('user:pass').toString('base64'), registryToken: 'eyJhbGciOi.J9-_' });
    checkAuthConfig({ auth: '', registryToken: '' });
    refused(() => checkAuthConfig({ auth: '', registryToken: 'a\nb' }), 'auth.registry_token');
    refused(() => checkAuthConfig({ auth: '', registryToken: '☃' }), 'auth.registry_token');
    refused(() => checkAuthConfig({ auth: 'not base64!', registryToken: '' }), 'auth.auth');
    refused(() => checkAuthConfig({ auth: Buffer.from('no-colon').toString('base64'), registryToken: '' }), 'auth.auth');
  });
});
