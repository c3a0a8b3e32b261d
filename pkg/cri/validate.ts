import { isIP } from 'node:net';
import { isAbsolute, posix } from 'node:path';

import type { CreateContainerRequest__Output, RunPodSandboxRequest__Output } from '../../proto/types.js';
import { invalidArgument } from '../errdefs/errors.js';

// The client's strings that reach paths, command lines, CNI_ARGS and the
// pod's files, checked once where a request comes in (INVALID_ARGUMENT naming
// the field). CNI_ARGS is "K=V;K=V": a ';' or '=' in a pod's name would add
// arguments of its own (IP=…); resolv.conf and /etc/hosts are lines: a newline
// adds a nameserver; a NUL makes spawn throw; '..' leaves a folder.
//
// No stricter than Kubernetes lets a real pod be, nor than critest and crictl
// send: names keep DNS-1123's characters and lengths, upper case and '_'
// allowed too (critest names pods "PodSandbox-with-log-directory-<uuid>" and
// containers longer than a DNS label), as containerd and CRI-O accept them.

/** Letters, digits, '.', '_', '-'; starts and ends with a letter or digit. */
const nameChars = /^[A-Za-z0-9](?:[A-Za-z0-9._-]*[A-Za-z0-9])?$/;

/** How a value is quoted in an error: short, control characters visible. */
export function shown(value: string): string {
  const s = JSON.stringify(value.length > 80 ? `${value.slice(0, 80)}…` : value);
  return value.length > 80 ? `${s} (${value.length} characters)` : s;
}

/** A name that may become a path element, a CNI argument or a process argument. */
export function checkName(value: string, field: string, maxLength: number): void {
  if (value === '') throw invalidArgument(`${field} must not be empty`, { field });
  if (value.length > maxLength) throw invalidArgument(`${field} ${shown(value)} is longer than ${maxLength} characters`, { field });
  if (!nameChars.test(value)) {
    throw invalidArgument(`${field} ${shown(value)} must consist of letters, digits, '.', '_' or '-', and start and end with a letter or digit`, { field });
  }
}

export interface PodMetadataInput {
  name: string;
  namespace: string;
  uid: string;
}

/** Pod name (a DNS subdomain in Kubernetes: 253), namespace (a DNS label: 63), uid (a UUID there; any id here). */
export function checkPodMetadata(md: PodMetadataInput, prefix = 'config.metadata'): void {
  checkName(md.name, `${prefix}.name`, 253);
  checkName(md.namespace, `${prefix}.namespace`, 63);
  checkName(md.uid, `${prefix}.uid`, 253);
}

/** Container name (a DNS label in Kubernetes; critest's are longer): conmon's -n, logs, events. */
export function checkContainerName(name: string, field = 'config.metadata.name'): void {
  checkName(name, field, 253);
}

/** The host name a pod's UTS namespace gets and /etc/hosts and /etc/hostname carry: at most 64 bytes (the kernel's limit). */
export function checkHostname(hostname: string, field = 'config.hostname'): void {
  if (!/^[a-zA-Z0-9](?:[a-zA-Z0-9._-]{0,63})$/.test(hostname)) {
    throw invalidArgument(`hostname ${shown(hostname)} is not a valid host name (at most 64 letters, digits, '.', '_' or '-')`, { field });
  }
}

const control = /[\u0000-\u001f\u007f]/;

/** No NUL, newline or other control character: the value is a path or an argument of a process. */
export function checkPrintable(value: string, field: string): void {
  if (control.test(value)) throw invalidArgument(`${field} ${shown(value)} must not contain control characters (NUL, newline, …)`, { field });
}

/** What the kernel takes as a path: at most 4095 bytes, each name at most 255 (ENAMETOOLONG otherwise, deep in conmon). */
function checkPathLength(value: string, field: string): void {
  if (Buffer.byteLength(value) > 4095) throw invalidArgument(`${field} ${shown(value)} is longer than a path may be (4095 bytes)`, { field });
  if (value.split('/').some((name) => Buffer.byteLength(name) > 255)) throw invalidArgument(`${field} ${shown(value)} has a name longer than 255 bytes`, { field });
}

/** A folder given by absolute path (a pod's log_directory): absolute, no '..', no control characters. Empty is allowed (no logs folder). */
export function checkAbsoluteFolder(value: string, field: string): void {
  if (value === '') return;
  checkPrintable(value, field);
  checkPathLength(value, field);
  if (!isAbsolute(value)) throw invalidArgument(`${field} ${shown(value)} must be an absolute path`, { field });
  if (value.split('/').includes('..')) throw invalidArgument(`${field} ${shown(value)} must not contain '..'`, { field });
}

/** A path below a folder (a container's log_path under its pod's log_directory): it must stay below it. */
export function checkPathBelow(value: string, field: string): void {
  if (value === '') return;
  checkPrintable(value, field);
  checkPathLength(value, field);
  const n = posix.normalize(`/${value}`);
  if (value.split('/').includes('..') || n === '/') throw invalidArgument(`${field} ${shown(value)} must name a file inside the pod's log_directory (no '..')`, { field });
}

/** An IP address, or empty (a port mapping's host_ip: all addresses). */
export function checkOptionalIp(value: string, field: string): void {
  if (value === '') return;
  if (isIP(value) === 0) throw invalidArgument(`${field} ${shown(value)} is not an IP address`, { field });
}

/**
 * DNS settings become lines of resolv.conf: servers are IP addresses;
 * searches are domain names (DNS subdomains; a trailing dot is fine);
 * options are single words such as ndots:5, edns0, timeout:1.
 */
export function checkDnsConfig(dns: { servers: readonly string[]; searches: readonly string[]; options: readonly string[] }, prefix = 'config.dns_config'): void {
  for (const [i, s] of dns.servers.entries()) {
    if (isIP(s) === 0) throw invalidArgument(`${shown(s)} is not an IP address`, { field: `${prefix}.servers[${i}]` });
  }
  for (const [i, s] of dns.searches.entries()) {
    const d = s.endsWith('.') ? s.slice(0, -1) : s;
    if (d.length > 253 || !d.split('.').every((l) => /^[A-Za-z0-9_](?:[A-Za-z0-9_-]{0,61}[A-Za-z0-9_])?$/.test(l))) {
      throw invalidArgument(`${shown(s)} is not a DNS search domain`, { field: `${prefix}.searches[${i}]` });
    }
  }
  for (const [i, o] of dns.options.entries()) {
    if (!/^[^\s\u0000-\u001f\u007f]{1,256}$/.test(o)) throw invalidArgument(`${shown(o)} is not a resolver option (one word such as ndots:5 or edns0)`, { field: `${prefix}.options[${i}]` });
  }
}

/** Kubernetes' sysctl name (dots or slashes between lower-case words): runc makes a /proc/sys path of it. */
export function checkSysctls(sysctls: Readonly<Record<string, string>>, field: string): void {
  for (const [k, v] of Object.entries(sysctls)) {
    if (k.length > 253 || !/^([a-z0-9]([-_a-z0-9]*[a-z0-9])?[./])*[a-z0-9]([-_a-z0-9]*[a-z0-9])?$/.test(k)) throw invalidArgument(`sysctl name ${shown(k)} is not valid`, { field: `${field}[${shown(k)}]` });
    checkPrintable(v, `${field}[${k}]`);
  }
}

type PodConfig = NonNullable<RunPodSandboxRequest__Output['config']>;
type ContainerConfig = NonNullable<CreateContainerRequest__Output['config']>;

/** Everything of RunPodSandbox's config that reaches a path, CNI_ARGS, a file or a process (the host name defaults later, so it is checked there). */
export function checkPodSandboxConfig(config: PodConfig): asserts config is PodConfig & { metadata: NonNullable<PodConfig['metadata']> } {
  if (!config.metadata) throw invalidArgument('metadata is required', { field: 'config.metadata' });
  checkPodMetadata(config.metadata);
  checkAbsoluteFolder(config.logDirectory, 'config.log_directory');
  if (config.dnsConfig) checkDnsConfig(config.dnsConfig);
  for (const [i, p] of (config.portMappings ?? []).entries()) {
    checkOptionalIp(p.hostIp, `config.port_mappings[${i}].host_ip`);
    if (typeof p.protocol !== 'string') throw invalidArgument(`protocol ${String(p.protocol)} is not one of TCP, UDP, SCTP`, { field: `config.port_mappings[${i}].protocol` });
  }
  checkSysctls(config.linux?.sysctls ?? {}, 'config.linux.sysctls');
}

/** What of CreateContainer's config reaches conmon's command line and the log file's path. */
export function checkContainerConfig(config: ContainerConfig): asserts config is ContainerConfig & { metadata: NonNullable<ContainerConfig['metadata']> } {
  if (!config.metadata) throw invalidArgument('metadata is required', { field: 'config.metadata' });
  checkContainerName(config.metadata.name);
  checkPathBelow(config.logPath, 'config.log_path');
}

/**
 * Registry credentials go into HTTP headers: a bearer token as it is, `auth`
 * as the Basic credentials it already is (base64 of "user:password", as in a
 * docker config). A character a header cannot carry is the caller's mistake,
 * not an unreachable registry.
 */
export function checkAuthConfig(a: { auth: string; registryToken: string }, prefix = 'auth'): void {
  if (a.registryToken !== '' && !/^[\x21-\x7e]+$/.test(a.registryToken)) {
    throw invalidArgument('registry_token must be printable ASCII without spaces (it is sent as a bearer token)', { field: `${prefix}.registry_token` });
  }
  if (a.auth !== '') {
    const decoded = /^[A-Za-z0-9+/]+={0,2}$/.test(a.auth) ? Buffer.from(a.auth, 'base64').toString('utf8') : '';
    if (!decoded.includes(':')) throw invalidArgument('auth must be base64 of "username:password"', { field: `${prefix}.auth` });
  }
}
