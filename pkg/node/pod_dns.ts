import { invalidArgument } from '../errdefs/errors.js';

// A pod's DNS as kubelet gives it (its DNS configurer): the CRI DNSConfig of
// the sandbox from the pod's dnsPolicy and dnsConfig, the node's cluster DNS
// servers and domain, and the node's own resolv.conf.
//   ClusterFirst (and ClusterFirstWithHostNet on the node's network): the
//     cluster DNS servers, searches <ns>.svc.<domain>, svc.<domain>, <domain>
//     then the node's, ndots:5; without cluster DNS configured, as Default.
//   Default (and ClusterFirst on the node's network): the node's resolv.conf.
//   None: dnsConfig alone.
// dnsConfig is merged on top: servers and searches appended without repeats
// (3 servers, 32 searches at most), options replaced by name.

export type DnsPolicy = 'ClusterFirst' | 'ClusterFirstWithHostNet' | 'Default' | 'None';

export interface PodDnsConfig {
  nameservers: string[];
  searches: string[];
  options: Array<{ name: string; value?: string }>;
}

export interface NodeDns {
  /** kubelet's clusterDNS; empty: no cluster DNS. */
  clusterDNS: string[];
  clusterDomain: string;
  /** The node's resolv.conf. */
  host: { servers: string[]; searches: string[]; options: string[] };
}

/** The CRI DNSConfig for the sandbox; undefined leaves the runtime to the node's resolv.conf. */
export function sandboxDns(
  pod: { namespace: string; hostNetwork: boolean; dnsPolicy: DnsPolicy; dnsConfig?: PodDnsConfig },
  node: NodeDns,
): { config?: { servers: string[]; searches: string[]; options: string[] }; warning?: string } {
  let base: { servers: string[]; searches: string[]; options: string[] } | undefined;
  let warning: string | undefined;
  const clusterFirst = pod.dnsPolicy === 'ClusterFirstWithHostNet' || (pod.dnsPolicy === 'ClusterFirst' && !pod.hostNetwork);
  if (pod.dnsPolicy === 'None') base = { servers: [], searches: [], options: [] };
  else if (clusterFirst && node.clusterDNS.length > 0) {
    const d = node.clusterDomain;
    base = { servers: [...node.clusterDNS], searches: [`${pod.namespace}.svc.${d}`, `svc.${d}`, d, ...node.host.searches], options: ['ndots:5'] };
  } else {
    // kubelet's event: the pod asked for cluster DNS the node was not given.
    if (clusterFirst) warning = 'kubelet does not have ClusterDNS IP configured and cannot create Pod using "ClusterFirst" policy. Falling back to "Default" policy.';
    if (!pod.dnsConfig) return warning ? { warning } : {};
    base = { ...node.host };
  }
  const extra = pod.dnsConfig;
  if (extra) {
    base = {
      servers: [...new Set([...base.servers, ...extra.nameservers])].slice(0, 3),
      searches: [...new Set([...base.searches, ...extra.searches])].slice(0, 32),
      options: mergeOptions(base.options, extra.options),
    };
  }
  return { config: base, ...(warning ? { warning } : {}) };
}

function mergeOptions(base: string[], extra: PodDnsConfig['options']): string[] {
  const byName = new Map(base.map((o) => [o.split(':')[0]!, o]));
  for (const o of extra) byName.set(o.name, o.value !== undefined && o.value !== '' ? `${o.name}:${o.value}` : o.name);
  return [...byName.values()];
}

/** resolv.conf's servers, searches and options. */
export function parseResolvConf(text: string): NodeDns['host'] {
  const out = { servers: [] as string[], searches: [] as string[], options: [] as string[] };
  for (const line of text.split('\n')) {
    const [k, ...rest] = line.replace(/[#;].*$/, '').trim().split(/\s+/);
    if (k === 'nameserver' && rest[0]) out.servers.push(rest[0]);
    else if (k === 'search' || k === 'domain') out.searches = rest;
    else if (k === 'options') out.options.push(...rest);
  }
  return out;
}

type Obj = Record<string, unknown>;
const isObj = (v: unknown): v is Obj => typeof v === 'object' && v !== null && !Array.isArray(v);

export function dnsPolicyOf(v: unknown): DnsPolicy {
  const p = v ?? 'ClusterFirst';
  if (p !== 'ClusterFirst' && p !== 'ClusterFirstWithHostNet' && p !== 'Default' && p !== 'None') throw invalidArgument(`must be ClusterFirst, ClusterFirstWithHostNet, Default or None, got ${JSON.stringify(p)}`, { field: 'spec.dnsPolicy' });
  return p;
}

export function dnsConfigOf(v: unknown, policy: DnsPolicy): PodDnsConfig | undefined {
  if (v === undefined || v === null) {
    if (policy === 'None') throw invalidArgument('is required with dnsPolicy None', { field: 'spec.dnsConfig' });
    return undefined;
  }
  const f = 'spec.dnsConfig';
  if (!isObj(v)) throw invalidArgument('must be an object', { field: f });
  for (const k of Object.keys(v)) if (!['nameservers', 'searches', 'options'].includes(k)) throw invalidArgument('is not a dnsConfig field', { field: `${f}.${k}` });
  const strings = (x: unknown, field: string): string[] => {
    if (x === undefined || x === null) return [];
    if (!Array.isArray(x) || x.some((s) => typeof s !== 'string' || s === '')) throw invalidArgument('must be a list of strings', { field });
    return x as string[];
  };
  const nameservers = strings(v.nameservers, `${f}.nameservers`);
  if (nameservers.length > 3) throw invalidArgument('may hold 3 servers at most', { field: `${f}.nameservers` });
  const searches = strings(v.searches, `${f}.searches`);
  const options = (Array.isArray(v.options) ? v.options : v.options === undefined || v.options === null ? [] : null)?.map((o: unknown, i: number) => {
    if (!isObj(o) || typeof o.name !== 'string' || o.name === '') throw invalidArgument('needs a name', { field: `${f}.options[${i}].name` });
    return { name: o.name, ...(typeof o.value === 'string' ? { value: o.value } : {}) };
  });
  if (!options) throw invalidArgument('must be a list', { field: `${f}.options` });
  if (policy === 'None' && nameservers.length === 0) throw invalidArgument('dnsPolicy None needs at least one nameserver', { field: `${f}.nameservers` });
  return { nameservers, searches, options };
}
