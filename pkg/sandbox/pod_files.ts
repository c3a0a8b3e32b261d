import { mkdir, writeFile } from 'node:fs/promises';
import { join } from 'node:path';

import { invalidArgument } from '../errdefs/errors.js';

// The files every container of a pod bind-mounts: /etc/hostname, /etc/hosts
// and /etc/resolv.conf, from the CRI config (DNSConfig) or, without one, the
// node's resolver — which inside the node namespace is slirp4netns's.

export interface DnsConfig {
  servers: string[];
  searches: string[];
  options: string[];
}

export interface PodFiles {
  dir: string;
  hostname: string;
  hosts: string;
  resolvConf: string;
}

export async function writePodFiles(dir: string, hostname: string, ip: string | undefined, dns: DnsConfig | undefined, nodeResolvConf: string): Promise<PodFiles> {
  await mkdir(dir, { recursive: true, mode: 0o755 });
  const files = { dir, hostname: join(dir, 'hostname'), hosts: join(dir, 'hosts'), resolvConf: join(dir, 'resolv.conf') };
  await writeFile(files.hostname, `${hostname}\n`, { mode: 0o644 });
  const hosts = ['127.0.0.1\tlocalhost', '::1\tlocalhost ip6-localhost ip6-loopback', 'fe00::0\tip6-localnet', 'ff00::0\tip6-mcastprefix', 'ff02::1\tip6-allnodes', 'ff02::2\tip6-allrouters'];
  if (ip) hosts.push(`${ip}\t${hostname}`);
  await writeFile(files.hosts, hosts.join('\n') + '\n', { mode: 0o644 });
  await writeFile(files.resolvConf, dns && (dns.servers.length > 0 || dns.searches.length > 0 || dns.options.length > 0) ? resolvConfOf(dns) : nodeResolvConf, { mode: 0o644 });
  return files;
}

export function resolvConfOf(dns: DnsConfig): string {
  for (const [i, s] of dns.servers.entries()) {
    if (!/^[0-9a-fA-F.:]+$/.test(s)) throw invalidArgument(`"${s}" is not an IP address`, { field: `config.dns_config.servers[${i}]` });
  }
  const lines: string[] = [];
  if (dns.searches.length > 0) lines.push(`search ${dns.searches.join(' ')}`);
  for (const s of dns.servers) lines.push(`nameserver ${s}`);
  if (dns.options.length > 0) lines.push(`options ${dns.options.join(' ')}`);
  return lines.join('\n') + '\n';
}
