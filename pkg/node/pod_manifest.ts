import { createHash } from 'node:crypto';

import { parseAllDocuments } from 'yaml';

import { invalidArgument } from '../errdefs/errors.js';
import { type ContainerLifecycleSpec, containerLifecycleSpec, lifecycleContainerFields } from './container_spec.js';

// A Pod manifest (core/v1 Pod, YAML or JSON) as the node runs it: the part of
// the Pod spec this node carries out today, checked field by field. Anything
// the node would have to ignore silently (volumes)
// is refused naming the field, so a manifest never runs half-understood.

export interface ContainerPort {
  /** For probes and hooks that name their port. */
  name?: string;
  containerPort: number;
  hostPort?: number;
  protocol: 'TCP' | 'UDP' | 'SCTP';
  hostIP?: string;
}

/** The pod fields an env var may take (fieldRef.fieldPath) that a node knows without the API server's help. */
export const podFieldPaths = ['metadata.name', 'metadata.namespace', 'metadata.uid', 'spec.nodeName', 'spec.serviceAccountName', 'status.hostIP', 'status.podIP'] as const;
export type PodFieldPath = (typeof podFieldPaths)[number] | `metadata.labels['${string}']` | `metadata.annotations['${string}']`;

export interface PodContainer extends ContainerLifecycleSpec {
  name: string;
  image: string;
  command: string[];
  args: string[];
  /** A value, or a field of the pod (Downward API fieldRef) filled in when the pod runs. */
  env: Array<{ name: string; value: string; fieldPath?: PodFieldPath }>;
  workingDir?: string;
  ports: ContainerPort[];
  imagePullPolicy: 'Always' | 'IfNotPresent' | 'Never';
}

export interface PodManifest {
  name: string;
  namespace: string;
  /** Stable for the same content from the same place (as kubelet's static pod uid): a change is a new pod. */
  uid: string;
  labels: Record<string, string>;
  annotations: Record<string, string>;
  restartPolicy: 'Always' | 'OnFailure' | 'Never';
  hostNetwork: boolean;
  hostname?: string;
  terminationGracePeriodSeconds: number;
  /** Run one at a time, in order, each to success, before the containers (sidecars, restartPolicy Always, stay running). */
  initContainers: PodContainer[];
  containers: PodContainer[];
  /** Set when the pod is being deleted (RFC 3339): the worker stops it gracefully. */
  deletionTimestamp?: string;
  /** The grace the deletion asked for; it wins over terminationGracePeriodSeconds. */
  deletionGracePeriodSeconds?: number;
}

type Obj = Record<string, unknown>;

const dnsLabel = /^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$/;
const dnsSubdomain = /^[a-z0-9]([-a-z0-9.]{0,251}[a-z0-9])?$/;
const supportedPodFields = new Set(['containers', 'initContainers', 'restartPolicy', 'hostNetwork', 'hostname', 'terminationGracePeriodSeconds', 'nodeName', 'dnsPolicy', 'schedulerName', 'priority', 'enableServiceLinks', 'tolerations', 'securityContext']);
const supportedContainerFields = new Set(['name', 'image', 'command', 'args', 'env', 'workingDir', 'ports', 'imagePullPolicy', ...lifecycleContainerFields]);

const isObj = (v: unknown): v is Obj => typeof v === 'object' && v !== null && !Array.isArray(v);

function strings(v: unknown, field: string): string[] {
  if (v === undefined || v === null) return [];
  if (!Array.isArray(v) || v.some((x) => typeof x !== 'string')) throw invalidArgument('must be a list of strings', { field });
  return v as string[];
}

function stringMap(v: unknown, field: string): Record<string, string> {
  if (v === undefined || v === null) return {};
  if (!isObj(v) || Object.values(v).some((x) => typeof x !== 'string')) throw invalidArgument('must be a map of strings', { field });
  return v as Record<string, string>;
}

function port(v: unknown, field: string, min = 1): number {
  if (!Number.isInteger(v) || (v as number) < min || (v as number) > 65535) throw invalidArgument(`must be a port number ${min}-65535, got ${JSON.stringify(v)}`, { field });
  return v as number;
}

function container(c: unknown, i: number, list: 'containers' | 'initContainers'): PodContainer {
  const f = `spec.${list}[${i}]`;
  if (!isObj(c)) throw invalidArgument('must be an object', { field: f });
  for (const k of Object.keys(c)) {
    if (!supportedContainerFields.has(k)) throw invalidArgument("is not supported by this node yet", { field: `${f}.${k}` });
  }
  if (typeof c.name !== 'string' || !dnsLabel.test(c.name)) throw invalidArgument('must be a DNS label (lower-case letters, digits, -)', { field: `${f}.name` });
  if (typeof c.image !== 'string' || c.image.trim() === '') throw invalidArgument('is required', { field: `${f}.image` });
  const env = (Array.isArray(c.env) ? c.env : c.env === undefined ? [] : null)?.map((e: unknown, j: number) => {
    const ef = `${f}.env[${j}]`;
    if (!isObj(e) || typeof e.name !== 'string' || e.name === '') throw invalidArgument('needs a name', { field: `${ef}.name` });
    if (e.valueFrom !== undefined) {
      const vf = e.valueFrom;
      if (!isObj(vf) || Object.keys(vf).some((k) => k !== 'fieldRef')) throw invalidArgument('only fieldRef is supported by this node yet', { field: `${ef}.valueFrom` });
      const path = isObj(vf.fieldRef) ? vf.fieldRef.fieldPath : undefined;
      const known = typeof path === 'string' && ((podFieldPaths as readonly string[]).includes(path) || /^metadata\.(labels|annotations)\['[^']+'\]$/.test(path));
      if (!known) throw invalidArgument(`is not a pod field this node knows: ${JSON.stringify(path)}`, { field: `${ef}.valueFrom.fieldRef.fieldPath` });
      return { name: e.name, value: '', fieldPath: path as PodFieldPath };
    }
    return { name: e.name, value: typeof e.value === 'string' ? e.value : e.value === undefined ? '' : String(e.value) };
  });
  if (!env) throw invalidArgument('must be a list', { field: `${f}.env` });
  const ports = (Array.isArray(c.ports) ? c.ports : c.ports === undefined ? [] : null)?.map((p: unknown, j: number): ContainerPort => {
    const pf = `${f}.ports[${j}]`;
    if (!isObj(p)) throw invalidArgument('must be an object', { field: pf });
    const protocol = (p.protocol ?? 'TCP') as string;
    if (!['TCP', 'UDP', 'SCTP'].includes(protocol)) throw invalidArgument(`must be TCP, UDP or SCTP, got ${JSON.stringify(protocol)}`, { field: `${pf}.protocol` });
    if (p.name !== undefined && (typeof p.name !== 'string' || !/^(?=.*[a-z])[a-z0-9]([a-z0-9-]{0,13}[a-z0-9])?$/.test(p.name))) throw invalidArgument('must be a port name (IANA_SVC_NAME: up to 15 lower-case letters, digits, -)', { field: `${pf}.name` });
    return {
      ...(typeof p.name === 'string' ? { name: p.name } : {}),
      containerPort: port(p.containerPort, `${pf}.containerPort`),
      ...(p.hostPort !== undefined && p.hostPort !== 0 ? { hostPort: port(p.hostPort, `${pf}.hostPort`) } : {}),
      protocol: protocol as ContainerPort['protocol'],
      ...(typeof p.hostIP === 'string' && p.hostIP !== '' ? { hostIP: p.hostIP } : {}),
    };
  });
  if (!ports) throw invalidArgument('must be a list', { field: `${f}.ports` });
  const latest = !c.image.includes('@') && (!/:[^/]+$/.test(c.image) || c.image.endsWith(':latest'));
  const policy = (c.imagePullPolicy ?? (latest ? 'Always' : 'IfNotPresent')) as string;
  if (!['Always', 'IfNotPresent', 'Never'].includes(policy)) throw invalidArgument(`must be Always, IfNotPresent or Never, got ${JSON.stringify(policy)}`, { field: `${f}.imagePullPolicy` });
  if (c.workingDir !== undefined && typeof c.workingDir !== 'string') throw invalidArgument('must be a string', { field: `${f}.workingDir` });
  return {
    name: c.name,
    image: c.image.trim(),
    command: strings(c.command, `${f}.command`),
    args: strings(c.args, `${f}.args`),
    env,
    ...(typeof c.workingDir === 'string' && c.workingDir !== '' ? { workingDir: c.workingDir } : {}),
    ports,
    imagePullPolicy: policy as PodContainer['imagePullPolicy'],
    ...containerLifecycleSpec(c, f, ports, list === 'initContainers'),
  };
}

/** One manifest document as a pod; `source` (the file) and the text make its uid. */
export function podFromObject(o: unknown, source: string, text: string): PodManifest {
  if (!isObj(o)) throw invalidArgument('a manifest must be an object', { field: 'kind' });
  if (o.apiVersion !== 'v1' || o.kind !== 'Pod') throw invalidArgument(`must be apiVersion v1, kind Pod; got ${String(o.apiVersion)} ${String(o.kind)}`, { field: 'kind' });
  const md = o.metadata;
  if (!isObj(md)) throw invalidArgument('is required', { field: 'metadata' });
  if (typeof md.name !== 'string' || !dnsSubdomain.test(md.name)) throw invalidArgument('must be a DNS subdomain (lower-case letters, digits, - and .)', { field: 'metadata.name' });
  const namespace = md.namespace ?? 'default';
  if (typeof namespace !== 'string' || !dnsLabel.test(namespace)) throw invalidArgument('must be a DNS label', { field: 'metadata.namespace' });
  const spec = o.spec;
  if (!isObj(spec)) throw invalidArgument('is required', { field: 'spec' });
  for (const k of Object.keys(spec)) {
    if (!supportedPodFields.has(k)) throw invalidArgument("is not supported by this node yet", { field: `spec.${k}` });
  }
  if (!Array.isArray(spec.containers) || spec.containers.length === 0) throw invalidArgument('needs at least one container', { field: 'spec.containers' });
  const containers = spec.containers.map((c, i) => container(c, i, 'containers'));
  if (spec.initContainers !== undefined && spec.initContainers !== null && !Array.isArray(spec.initContainers)) throw invalidArgument('must be a list', { field: 'spec.initContainers' });
  const initContainers = (spec.initContainers ?? []).map((c: unknown, i: number) => container(c, i, 'initContainers'));
  // Init and app containers share one name space (API validation).
  const names = new Set<string>();
  for (const [list, cs] of [['initContainers', initContainers], ['containers', containers]] as const) {
    cs.forEach((c, i) => {
      if (names.has(c.name)) throw invalidArgument(`the name ${c.name} is used twice`, { field: `spec.${list}[${i}].name` });
      names.add(c.name);
    });
  }
  if (md.deletionTimestamp !== undefined && md.deletionTimestamp !== null && (typeof md.deletionTimestamp !== 'string' || Number.isNaN(Date.parse(md.deletionTimestamp)))) throw invalidArgument('must be an RFC 3339 time', { field: 'metadata.deletionTimestamp' });
  const deletionGrace = md.deletionGracePeriodSeconds;
  if (deletionGrace !== undefined && deletionGrace !== null && (!Number.isInteger(deletionGrace) || (deletionGrace as number) < 0)) throw invalidArgument('must be a whole number of seconds, 0 or more', { field: 'metadata.deletionGracePeriodSeconds' });
  const restartPolicy = (spec.restartPolicy ?? 'Always') as string;
  if (!['Always', 'OnFailure', 'Never'].includes(restartPolicy)) throw invalidArgument(`must be Always, OnFailure or Never, got ${JSON.stringify(restartPolicy)}`, { field: 'spec.restartPolicy' });
  const grace = spec.terminationGracePeriodSeconds ?? 30;
  if (!Number.isInteger(grace) || (grace as number) < 0) throw invalidArgument('must be a whole number of seconds, 0 or more', { field: 'spec.terminationGracePeriodSeconds' });
  if (spec.hostname !== undefined && (typeof spec.hostname !== 'string' || !dnsLabel.test(spec.hostname))) throw invalidArgument('must be a DNS label', { field: 'spec.hostname' });
  const hash = createHash('sha256').update(source).update('\0').update(text).digest('hex');
  return {
    name: md.name,
    namespace,
    uid: `${hash.slice(0, 8)}-${hash.slice(8, 12)}-${hash.slice(12, 16)}-${hash.slice(16, 20)}-${hash.slice(20, 32)}`,
    labels: stringMap(md.labels, 'metadata.labels'),
    annotations: stringMap(md.annotations, 'metadata.annotations'),
    restartPolicy: restartPolicy as PodManifest['restartPolicy'],
    hostNetwork: spec.hostNetwork === true,
    ...(typeof spec.hostname === 'string' ? { hostname: spec.hostname } : {}),
    terminationGracePeriodSeconds: grace as number,
    initContainers,
    containers,
    ...(typeof md.deletionTimestamp === 'string' ? { deletionTimestamp: md.deletionTimestamp } : {}),
    ...(typeof deletionGrace === 'number' ? { deletionGracePeriodSeconds: deletionGrace } : {}),
  };
}

/** The pods of a manifest file (several YAML documents allowed); errors name the file, the document and the field. */
export function parseManifest(text: string, source: string): PodManifest[] {
  const docs = parseAllDocuments(text);
  const out: PodManifest[] = [];
  docs.forEach((d, i) => {
    const where = docs.length > 1 ? `${source} (document ${i + 1})` : source;
    if (d.errors.length > 0) throw invalidArgument(`${where}: ${d.errors[0]!.message}`, { field: where });
    const o: unknown = d.toJS();
    if (o === null || o === undefined) return;
    try {
      out.push(podFromObject(o, `${source}#${i}`, d.toString()));
    } catch (e: unknown) {
      const err = e as Error & { field?: string };
      throw invalidArgument(`${where}: ${err.field ? `${err.field} ` : ''}${err.message}`, { field: err.field ? `${where}: ${err.field}` : where });
    }
  });
  return out;
}
