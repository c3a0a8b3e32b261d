import { failedPrecondition, invalidArgument, notFound } from '../errdefs/errors.js';
import type { ContainerResource, PodContainer, PodManifest } from './pod_manifest.js';
import { parseQuantity } from './quantity.js';

// A container's environment as kubelet makes it: envFrom first (every key of
// a configMap or secret, with its prefix; later sources override earlier
// ones), then env in order, each literal value with $(VAR) references to the
// variables defined before it expanded. Values from valueFrom (pod fields,
// resources, configMap and secret keys) are taken as they are. A missing
// object or key is an error naming it unless the reference is optional; then
// the variable is left out, as kubelet does.

/** The API objects env reads (pod_volumes.ts's ClusterObjects has these and tokens); undefined: not found. */
export interface ConfigObjects {
  configMap(namespace: string, name: string): Promise<{ data: Record<string, string>; binaryData: Record<string, Buffer> } | undefined>;
  secret(namespace: string, name: string): Promise<{ data: Record<string, Buffer> } | undefined>;
  /** Services with a cluster IP: the namespace's, and default/kubernetes (for the service env vars). */
  services?(namespace: string): Promise<ServiceInfo[]>;
}

export interface ServiceInfo {
  namespace: string;
  name: string;
  clusterIP: string;
  ports: Array<{ name: string; port: number; protocol: string }>;
}

/**
 * Docker-links-style variables for services, as kubelet gives every
 * container: FOO_SERVICE_HOST, FOO_SERVICE_PORT[_NAME], FOO_PORT,
 * FOO_PORT_80_TCP[_PROTO|_PORT|_ADDR]. The API server's own service
 * (default/kubernetes) always; the pod namespace's only with
 * enableServiceLinks.
 */
export function serviceEnv(services: readonly ServiceInfo[], namespace: string, enableServiceLinks: boolean): Map<string, string> {
  const out = new Map<string, string>();
  const chosen = services.filter((s) => s.clusterIP !== '' && s.clusterIP !== 'None' && ((s.namespace === 'default' && s.name === 'kubernetes') || (enableServiceLinks && s.namespace === namespace)));
  // The pod namespace's services win over the master service of the same name (kubelet's order).
  chosen.sort((a, b) => Number(a.namespace === namespace) - Number(b.namespace === namespace));
  for (const s of chosen) {
    const name = s.name.toUpperCase().replace(/-/g, '_');
    const host = s.clusterIP.includes(':') ? `[${s.clusterIP}]` : s.clusterIP;
    out.set(`${name}_SERVICE_HOST`, s.clusterIP);
    const first = s.ports[0];
    if (!first) continue;
    out.set(`${name}_SERVICE_PORT`, String(first.port));
    for (const p of s.ports) if (p.name) out.set(`${name}_SERVICE_PORT_${p.name.toUpperCase().replace(/-/g, '_')}`, String(p.port));
    out.set(`${name}_PORT`, `${first.protocol.toLowerCase()}://${host}:${first.port}`);
    for (const p of s.ports) {
      const prefix = `${name}_PORT_${p.port}_${p.protocol.toUpperCase()}`;
      out.set(prefix, `${p.protocol.toLowerCase()}://${host}:${p.port}`);
      out.set(`${prefix}_PROTO`, p.protocol.toLowerCase());
      out.set(`${prefix}_PORT`, String(p.port));
      out.set(`${prefix}_ADDR`, s.clusterIP);
    }
  }
  return out;
}

export interface PodFields {
  podIP: string;
  /** Every pod address (IPv4 and IPv6), the first one podIP. */
  podIPs: string[];
  hostIP: string;
  hostIPs?: string[];
  nodeName: string;
}

/** The node's allocatable cpu, memory and ephemeral-storage (quantities): a resourceFieldRef to an unset limit gets these. */
export type NodeAllocatable = Record<'cpu' | 'memory' | 'ephemeral-storage', string>;

export interface EnvFacts extends PodFields {
  allocatable: NodeAllocatable;
  /** An envFrom key that is not a valid variable name is skipped, and said so here (kubelet's InvalidEnvironmentVariableNames event). */
  warn?: (message: string) => void;
}

export interface KeyValue {
  key: string;
  value: string;
}

/** A Downward API field of the pod, as kubelet fills env fieldRefs and downwardAPI files. */
export function fieldValue(pod: PodManifest, path: string, f: PodFields | undefined): string {
  const m = /^metadata\.(labels|annotations)\['([^']+)'\]$/.exec(path);
  if (m) return (m[1] === 'labels' ? pod.labels : pod.annotations)[m[2]!] ?? '';
  switch (path) {
    case 'metadata.name':
      return pod.name;
    case 'metadata.namespace':
      return pod.namespace;
    case 'metadata.uid':
      return pod.uid;
    case 'metadata.labels':
      return formatMap(pod.labels);
    case 'metadata.annotations':
      return formatMap(pod.annotations);
    case 'spec.nodeName':
      return f?.nodeName ?? '';
    case 'spec.serviceAccountName':
      return pod.serviceAccountName;
    case 'status.podIP':
      return f?.podIP ?? '';
    case 'status.podIPs':
      return (f?.podIPs ?? []).join(',');
    case 'status.hostIP':
      return f?.hostIP ?? '';
    case 'status.hostIPs':
      return (f?.hostIPs ?? (f?.hostIP ? [f.hostIP] : [])).join(',');
    default:
      return '';
  }
}

/** A label or annotation map as a downwardAPI file shows it: key="value" lines, sorted, values quoted. */
export function formatMap(m: Record<string, string>): string {
  return Object.keys(m)
    .sort()
    .map((k) => `${k}=${JSON.stringify(m[k])}`)
    .join('\n');
}

/**
 * A container resource (limits.cpu, requests.memory, ...) divided by the
 * divisor and rounded up, as kubelet does (cpu in thousandths of a core,
 * memory and storage in whole bytes); an unset limit is the node's allocatable.
 */
export function resourceValue(container: PodContainer, resource: ContainerResource, divisor: number, allocatable: NodeAllocatable): string {
  const [group, name] = resource.split('.') as ['limits' | 'requests', 'cpu' | 'memory' | 'ephemeral-storage'];
  const value = container.resources[group][name] ?? (group === 'limits' ? parseQuantity(allocatable[name], `allocatable.${name}`) : 0);
  // Whole units of the precision kubelet works in, so 0.25 / 0.001 is 250, not 250.00000000000003.
  const units = (x: number): bigint => BigInt(name === 'cpu' ? Math.ceil(Math.round(x * 1e6) / 1e3) : Math.ceil(x));
  const [a, b] = [units(value), units(divisor)];
  if (b <= 0n) throw invalidArgument(`the divisor of ${resource} is below the resource's precision`, { field: resource });
  return String(a / b + (a % b === 0n ? 0n : 1n));
}

/**
 * Expands $(NAME) references in `input` as kubelet does: a defined name
 * becomes its value, an undefined one stays as written, $$ is a literal $,
 * and any other $ (or an unclosed $( ) is kept as it is.
 */
export function expand(input: string, lookup: (name: string) => string | undefined): string {
  let out = '';
  for (let i = 0; i < input.length; i++) {
    const ch = input[i]!;
    if (ch !== '$' || i + 1 >= input.length) {
      out += ch;
      continue;
    }
    const next = input[i + 1]!;
    if (next === '$') {
      out += '$';
      i++;
    } else if (next === '(') {
      const close = input.indexOf(')', i + 2);
      if (close < 0) {
        out += input.slice(i);
        break;
      }
      const name = input.slice(i + 2, close);
      out += lookup(name) ?? `$(${name})`;
      i = close;
    } else {
      out += ch;
    }
  }
  return out;
}

/** command or args with $(VAR) references to the container's env expanded, as kubelet expands them. */
export function expandCommand(args: readonly string[], env: readonly KeyValue[]): string[] {
  const vars = new Map(env.map((e) => [e.key, e.value]));
  return args.map((a) => expand(a, (n) => vars.get(n)));
}

/** The env of `container` in `pod`, in kubelet's order and with its rules. */
export async function containerEnv(pod: PodManifest, container: PodContainer, f: EnvFacts, cluster?: ConfigObjects): Promise<KeyValue[]> {
  const index = pod.containers.indexOf(container);
  const at = `spec.containers[${index < 0 ? container.name : index}]`;
  const configMaps = new Map<string, Record<string, string> | undefined>();
  const secrets = new Map<string, Record<string, Buffer> | undefined>();
  const noControlPlane = (what: string, field: string): Error => failedPrecondition(`${what} cannot be read: this node has no control plane`, { field });
  const configMap = async (name: string, field: string): Promise<Record<string, string> | undefined> => {
    if (!configMaps.has(name)) {
      if (!cluster) throw noControlPlane(`configmap "${name}"`, field);
      configMaps.set(name, (await cluster.configMap(pod.namespace, name))?.data);
    }
    return configMaps.get(name);
  };
  const secret = async (name: string, field: string): Promise<Record<string, Buffer> | undefined> => {
    if (!secrets.has(name)) {
      if (!cluster) throw noControlPlane(`secret "${name}"`, field);
      secrets.set(name, (await cluster.secret(pod.namespace, name))?.data);
    }
    return secrets.get(name);
  };

  // Service variables: under the pod's own, and usable in their $(VAR) expansions.
  const services = cluster?.services ? serviceEnv(await cluster.services(pod.namespace), pod.namespace, pod.enableServiceLinks) : new Map<string, string>();
  // Insertion order is kept; a later definition of a name replaces its value.
  const vars = new Map<string, string>();
  for (const [j, src] of container.envFrom.entries()) {
    const field = `${at}.envFrom[${j}].${src.kind}`;
    const data: Record<string, string> | undefined =
      src.kind === 'configMapRef'
        ? await configMap(src.name, field)
        : await secret(src.name, field).then((d) => (d ? Object.fromEntries(Object.entries(d).map(([k, v]) => [k, v.toString('utf8')])) : undefined));
    const what = `${src.kind === 'configMapRef' ? 'configmap' : 'secret'} "${src.name}"`;
    if (!data) {
      if (src.optional) continue;
      throw notFound(`${what} not found`, { field });
    }
    const invalid: string[] = [];
    for (const key of Object.keys(data).sort()) {
      const name = src.prefix + key;
      if (!/^[\x20-\x3c\x3e-\x7e]+$/.test(name)) {
        invalid.push(key);
        continue;
      }
      vars.set(name, data[key]!);
    }
    if (invalid.length > 0) f.warn?.(`keys [${invalid.join(', ')}] from the envFrom ${what} of ${pod.namespace}/${pod.name} were skipped since they are not valid environment variable names`);
  }
  for (const [j, e] of container.env.entries()) {
    const field = `${at}.env[${j}].valueFrom`;
    const v = e.valueFrom;
    if (!v) {
      vars.set(e.name, expand(e.value, (n) => vars.get(n) ?? services.get(n)));
      continue;
    }
    switch (v.kind) {
      case 'fieldRef':
        vars.set(e.name, fieldValue(pod, v.fieldPath, f));
        break;
      case 'resourceFieldRef':
        vars.set(e.name, resourceValue(container, v.resource, v.divisor, f.allocatable));
        break;
      case 'configMapKeyRef':
      case 'secretKeyRef': {
        const isConfigMap = v.kind === 'configMapKeyRef';
        const what = `${isConfigMap ? 'configmap' : 'secret'} "${v.name}"`;
        const data = isConfigMap ? await configMap(v.name, `${field}.${v.kind}`) : await secret(v.name, `${field}.${v.kind}`);
        if (!data) {
          if (v.optional) break;
          throw notFound(`${what} not found`, { field: `${field}.${v.kind}.name` });
        }
        const value = data[v.key];
        if (value === undefined) {
          if (v.optional) break;
          throw notFound(`key ${v.key} not found in ${what}`, { field: `${field}.${v.kind}.key` });
        }
        vars.set(e.name, typeof value === 'string' ? value : value.toString('utf8'));
        break;
      }
    }
  }
  for (const [k, v] of services) if (!vars.has(k)) vars.set(k, v);
  return [...vars].map(([key, value]) => ({ key, value }));
}
