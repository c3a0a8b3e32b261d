import { createHash } from 'node:crypto';

import { parseAllDocuments } from 'yaml';

import { invalidArgument } from '../errdefs/errors.js';
import { type ContainerLifecycleSpec, containerLifecycleSpec, lifecycleContainerFields } from './container_spec.js';
import { type DnsPolicy, dnsConfigOf, dnsPolicyOf, type PodDnsConfig } from './pod_dns.js';
import { parseQuantity } from './quantity.js';
import { type ContainerSecurity, containerSecurityOf, type PodSecurity, podSecurityOf } from './security_context.js';

// A Pod manifest (core/v1 Pod, YAML or JSON; a static pod's file or a pod
// from the kube-apiserver) as the node runs it: the part of the Pod spec this
// node carries out, checked field by field. Fields the API server fills in
// with defaults, or that do not change what the node runs, are accepted (the
// lists below say which and why); anything else the node would have to ignore
// silently is refused naming the field, so a pod never runs half-understood.

export interface ContainerPort {
  /** For probes and hooks that name their port. */
  name?: string;
  containerPort: number;
  hostPort?: number;
  protocol: 'TCP' | 'UDP' | 'SCTP';
  hostIP?: string;
}

/** The pod fields an env var may take (fieldRef.fieldPath) that a node knows without the API server's help. */
export const podFieldPaths = ['metadata.name', 'metadata.namespace', 'metadata.uid', 'spec.nodeName', 'spec.serviceAccountName', 'status.hostIP', 'status.hostIPs', 'status.podIP', 'status.podIPs'] as const;
export type PodFieldPath = (typeof podFieldPaths)[number] | `metadata.labels['${string}']` | `metadata.annotations['${string}']`;
/** What a downwardAPI volume file may hold (fieldRef): fewer than env, plus the whole label and annotation maps. */
export const volumeFieldPaths = ['metadata.name', 'metadata.namespace', 'metadata.uid', 'metadata.labels', 'metadata.annotations'] as const;
export type VolumeFieldPath = (typeof volumeFieldPaths)[number] | `metadata.labels['${string}']` | `metadata.annotations['${string}']`;
/** The container resources a resourceFieldRef may name. */
export const containerResources = ['limits.cpu', 'limits.memory', 'limits.ephemeral-storage', 'requests.cpu', 'requests.memory', 'requests.ephemeral-storage'] as const;
export type ContainerResource = (typeof containerResources)[number];

/** cpu in cores; memory and ephemeral-storage in bytes. */
export type ResourceQuantities = Partial<Record<'cpu' | 'memory' | 'ephemeral-storage', number>>;

export interface ResourceFieldRef {
  /** Required in a volume (which container's resources); in env, the container itself when empty. */
  containerName: string;
  resource: ContainerResource;
  /** The value is divided by it, rounded up (cores for cpu, bytes otherwise). */
  divisor: number;
}

/** Where an env var's value comes from (EnvVarSource), one of four. */
export type EnvVarSource =
  | { kind: 'fieldRef'; fieldPath: PodFieldPath }
  | ({ kind: 'resourceFieldRef' } & ResourceFieldRef)
  | { kind: 'configMapKeyRef' | 'secretKeyRef'; name: string; key: string; optional: boolean };

export interface EnvVar {
  name: string;
  /** The literal value ($(VAR) references expanded when the container is made); '' with valueFrom. */
  value: string;
  valueFrom?: EnvVarSource;
}

/** envFrom: every key of a configMap or secret, with a prefix. */
export interface EnvFromSource {
  kind: 'configMapRef' | 'secretRef';
  name: string;
  prefix: string;
  optional: boolean;
}

export interface VolumeMount {
  name: string;
  mountPath: string;
  readOnly: boolean;
  /** A path inside the volume (no '..', not absolute); '' for all of it. */
  subPath: string;
  /** subPath with $(VAR) references to the container's env, expanded when the container is made. */
  subPathExpr?: string;
  mountPropagation: 'None' | 'HostToContainer' | 'Bidirectional';
  recursiveReadOnly: boolean;
}

/** A file of a configMap, secret or downwardAPI volume. mode undefined: the volume's defaultMode. */
export interface KeyToPath {
  key: string;
  path: string;
  mode?: number;
}

export interface DownwardAPIFile {
  path: string;
  mode?: number;
  fieldRef?: VolumeFieldPath;
  resourceFieldRef?: ResourceFieldRef;
}

export type ProjectedSource =
  | { kind: 'serviceAccountToken'; audience: string; expirationSeconds: number; path: string }
  | { kind: 'configMap' | 'secret'; name: string; items?: KeyToPath[]; optional: boolean }
  | { kind: 'downwardAPI'; items: DownwardAPIFile[] };

export const hostPathTypes = ['', 'DirectoryOrCreate', 'Directory', 'FileOrCreate', 'File', 'Socket', 'CharDevice', 'BlockDevice'] as const;
export type HostPathType = (typeof hostPathTypes)[number];

export type VolumeSource =
  | { kind: 'emptyDir'; medium: '' | 'Memory'; sizeLimit?: string }
  | { kind: 'configMap' | 'secret'; name: string; items?: KeyToPath[]; defaultMode: number; optional: boolean }
  | { kind: 'downwardAPI'; items: DownwardAPIFile[]; defaultMode: number }
  | { kind: 'projected'; sources: ProjectedSource[]; defaultMode: number }
  | { kind: 'hostPath'; path: string; type: HostPathType };

export interface PodVolume {
  name: string;
  source: VolumeSource;
}

export interface PodContainer extends ContainerLifecycleSpec {
  name: string;
  image: string;
  security: ContainerSecurity;
  command: string[];
  args: string[];
  /** A value, or one filled in when the container is made (valueFrom). */
  env: EnvVar[];
  envFrom: EnvFromSource[];
  volumeMounts: VolumeMount[];
  /** For resourceFieldRef (the same shape as the pod worker's resources). */
  resources: { requests: ResourceQuantities; limits: ResourceQuantities };
  workingDir?: string;
  ports: ContainerPort[];
  imagePullPolicy: 'Always' | 'IfNotPresent' | 'Never';
}

export interface PodManifest {
  name: string;
  namespace: string;
  /**
   * The API server's metadata.uid; for a static pod, stable for the same
   * content from the same place (as kubelet's static pod uid): a change is a new pod.
   */
  uid: string;
  labels: Record<string, string>;
  annotations: Record<string, string>;
  restartPolicy: 'Always' | 'OnFailure' | 'Never';
  hostNetwork: boolean;
  /** The node's IPC namespace; the node's PID namespace; one PID namespace for the pod's containers. */
  hostIPC: boolean;
  hostPID: boolean;
  shareProcessNamespace: boolean;
  security: PodSecurity;
  /** The pod namespace's services as env vars (default true, as the API server defaults it). */
  enableServiceLinks: boolean;
  dnsPolicy: DnsPolicy;
  dnsConfig?: PodDnsConfig;
  /** Seconds the pod may be active on the node before it is Failed (DeadlineExceeded). */
  activeDeadlineSeconds?: number;
  hostname?: string;
  terminationGracePeriodSeconds: number;
  /** Run one at a time, in order, each to success, before the containers (sidecars, restartPolicy Always, stay running). */
  initContainers: PodContainer[];
  containers: PodContainer[];
  /** The object as written (a static pod's mirror pod is made from it). */
  raw: Record<string, unknown>;
  volumes: PodVolume[];
  /** '' for a static pod that names none. */
  serviceAccountName: string;
  /** Secrets (kubernetes.io/dockerconfigjson or dockercfg) with registry credentials for the pod's images. */
  imagePullSecrets: string[];
  /** Set when the pod is being deleted (RFC 3339): the worker stops it gracefully. */
  deletionTimestamp?: string;
  /** The grace the deletion asked for; it wins over terminationGracePeriodSeconds. */
  deletionGracePeriodSeconds?: number;
}

type Obj = Record<string, unknown>;

const dnsLabel = /^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$/;
const dnsSubdomain = /^[a-z0-9]([-a-z0-9.]{0,251}[a-z0-9])?$/;
/** The pod spec fields this node reads or may safely pass over; any other is refused by name. */
const supportedPodFields = new Set([
  // Carried out by the node.
  'containers', 'initContainers', 'volumes', 'restartPolicy', 'activeDeadlineSeconds', 'hostNetwork', 'hostIPC', 'hostPID', 'shareProcessNamespace', 'hostname', 'terminationGracePeriodSeconds', 'securityContext',
  // Scheduling: the scheduler has acted on them before the pod is bound to this node.
  'nodeName', 'nodeSelector', 'affinity', 'tolerations', 'schedulerName', 'priority', 'priorityClassName', 'preemptionPolicy', 'topologySpreadConstraints', 'schedulingGates',
  // The service account: admission has turned it into the kube-api-access projected volume the node mounts.
  'serviceAccountName', 'serviceAccount', 'automountServiceAccountToken', 'imagePullSecrets',
  // DNS (pod_dns.ts) and the service env vars (pod_env.ts).
  'dnsPolicy', 'dnsConfig', 'enableServiceLinks',
  // Checked below: only what the node runs anyway.
  'os',
  // Added by `kubectl debug` to a running pod: not run by this node yet, and no reason to fail the pod it was added to.
  'ephemeralContainers',
  // Conditions other controllers set on the pod; the node reports its own.
  'readinessGates',
]);
const supportedContainerFields = new Set([
  'name', 'image', 'command', 'args', 'env', 'envFrom', 'volumeMounts', 'workingDir', 'ports', 'imagePullPolicy', 'resources', 'securityContext',
  // Probes, lifecycle hooks, resources, termination message and the sidecar restartPolicy (container_spec.ts).
  ...lifecycleContainerFields,
]);

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

function container(c: unknown, i: number, kind: 'containers' | 'initContainers'): PodContainer {
  const f = `spec.${kind}[${i}]`;
  if (!isObj(c)) throw invalidArgument('must be an object', { field: f });
  for (const k of Object.keys(c)) {
    if (!supportedContainerFields.has(k)) throw invalidArgument("is not supported by this node yet", { field: `${f}.${k}` });
  }
  if (typeof c.name !== 'string' || !dnsLabel.test(c.name)) throw invalidArgument('must be a DNS label (lower-case letters, digits, -)', { field: `${f}.name` });
  if (typeof c.image !== 'string' || c.image.trim() === '') throw invalidArgument('is required', { field: `${f}.image` });
  const env = list(c.env, `${f}.env`).map((e, j) => envVar(e, `${f}.env[${j}]`));
  const envFrom = list(c.envFrom, `${f}.envFrom`).map((e, j) => envFromSource(e, `${f}.envFrom[${j}]`));
  const volumeMounts = list(c.volumeMounts, `${f}.volumeMounts`).map((m, j) => volumeMount(m, `${f}.volumeMounts[${j}]`));
  const paths = new Set<string>();
  volumeMounts.forEach((m, j) => {
    if (paths.has(m.mountPath)) throw invalidArgument(`mountPath ${m.mountPath} is used twice`, { field: `${f}.volumeMounts[${j}].mountPath` });
    paths.add(m.mountPath);
  });
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
    envFrom,
    volumeMounts,
    ...(typeof c.workingDir === 'string' && c.workingDir !== '' ? { workingDir: c.workingDir } : {}),
    ports,
    imagePullPolicy: policy as PodContainer['imagePullPolicy'],
    security: containerSecurityOf(c.securityContext, `${f}.securityContext`),
    ...containerLifecycleSpec(c, f, ports, kind === 'initContainers'),
  };
}

function list(v: unknown, field: string): unknown[] {
  if (v === undefined || v === null) return [];
  if (!Array.isArray(v)) throw invalidArgument('must be a list', { field });
  return v;
}

function optionalBool(v: unknown, field: string): boolean {
  if (v === undefined || v === null) return false;
  if (typeof v !== 'boolean') throw invalidArgument('must be true or false', { field });
  return v;
}

function requiredString(v: unknown, field: string): string {
  if (typeof v !== 'string' || v === '') throw invalidArgument('is required', { field });
  return v;
}

/** Only the keys named; the first other one is refused by name. */
function onlyKeys(o: Obj, keys: readonly string[], field: string): void {
  for (const k of Object.keys(o)) if (!keys.includes(k)) throw invalidArgument('is not supported by this node yet', { field: `${field}.${k}` });
}

/** An env var name as the API server takes it (relaxed validation): printable ASCII without '='. */
export const envVarName = /^[\x20-\x3c\x3e-\x7e]+$/;

function envVar(e: unknown, f: string): EnvVar {
  if (!isObj(e)) throw invalidArgument('must be an object', { field: f });
  onlyKeys(e, ['name', 'value', 'valueFrom'], f);
  if (typeof e.name !== 'string' || !envVarName.test(e.name)) throw invalidArgument('needs a name (printable characters, no =)', { field: `${f}.name` });
  if (e.valueFrom === undefined || e.valueFrom === null) return { name: e.name, value: typeof e.value === 'string' ? e.value : e.value === undefined || e.value === null ? '' : String(e.value) };
  if (e.value !== undefined && e.value !== '') throw invalidArgument('may not be set together with value', { field: `${f}.valueFrom` });
  const vf = e.valueFrom;
  const vff = `${f}.valueFrom`;
  if (!isObj(vf)) throw invalidArgument('must be an object', { field: vff });
  onlyKeys(vf, ['fieldRef', 'resourceFieldRef', 'configMapKeyRef', 'secretKeyRef'], vff);
  const kinds = Object.keys(vf);
  if (kinds.length !== 1) throw invalidArgument('must name exactly one of fieldRef, resourceFieldRef, configMapKeyRef, secretKeyRef', { field: vff });
  const kind = kinds[0] as 'fieldRef' | 'resourceFieldRef' | 'configMapKeyRef' | 'secretKeyRef';
  const src = vf[kind];
  const sf = `${vff}.${kind}`;
  if (!isObj(src)) throw invalidArgument('must be an object', { field: sf });
  switch (kind) {
    case 'fieldRef': {
      onlyKeys(src, ['fieldPath', 'apiVersion'], sf);
      const path = src.fieldPath;
      const known = typeof path === 'string' && ((podFieldPaths as readonly string[]).includes(path) || /^metadata\.(labels|annotations)\['[^']+'\]$/.test(path));
      if (!known) throw invalidArgument(`is not a pod field this node knows: ${JSON.stringify(path)}`, { field: `${sf}.fieldPath` });
      return { name: e.name, value: '', valueFrom: { kind, fieldPath: path as PodFieldPath } };
    }
    case 'resourceFieldRef':
      return { name: e.name, value: '', valueFrom: { kind, ...resourceFieldRef(src, sf, false) } };
    case 'configMapKeyRef':
    case 'secretKeyRef':
      onlyKeys(src, ['name', 'key', 'optional'], sf);
      return { name: e.name, value: '', valueFrom: { kind, name: requiredString(src.name, `${sf}.name`), key: requiredString(src.key, `${sf}.key`), optional: optionalBool(src.optional, `${sf}.optional`) } };
  }
}

function resourceFieldRef(o: Obj, f: string, inVolume: boolean): ResourceFieldRef {
  onlyKeys(o, ['containerName', 'resource', 'divisor'], f);
  if (!(containerResources as readonly unknown[]).includes(o.resource)) throw invalidArgument(`must be one of ${containerResources.join(', ')}; got ${JSON.stringify(o.resource)}`, { field: `${f}.resource` });
  const containerName = o.containerName ?? '';
  if (typeof containerName !== 'string' || (inVolume && containerName === '')) throw invalidArgument('must name a container of the pod', { field: `${f}.containerName` });
  // The API server writes an unset divisor as "0"; kubelet takes 0 as 1.
  const divisor = o.divisor === undefined || o.divisor === null ? 1 : parseQuantity(o.divisor, `${f}.divisor`) || 1;
  return { containerName, resource: o.resource as ContainerResource, divisor };
}

function envFromSource(e: unknown, f: string): EnvFromSource {
  if (!isObj(e)) throw invalidArgument('must be an object', { field: f });
  onlyKeys(e, ['prefix', 'configMapRef', 'secretRef'], f);
  const prefix = e.prefix ?? '';
  if (typeof prefix !== 'string' || (prefix !== '' && !envVarName.test(prefix))) throw invalidArgument('must be printable characters without =', { field: `${f}.prefix` });
  const kinds = (['configMapRef', 'secretRef'] as const).filter((k) => e[k] !== undefined && e[k] !== null);
  if (kinds.length !== 1) throw invalidArgument('must name exactly one of configMapRef, secretRef', { field: f });
  const kind = kinds[0]!;
  const ref = e[kind];
  if (!isObj(ref)) throw invalidArgument('must be an object', { field: `${f}.${kind}` });
  onlyKeys(ref, ['name', 'optional'], `${f}.${kind}`);
  return { kind, name: requiredString(ref.name, `${f}.${kind}.name`), prefix, optional: optionalBool(ref.optional, `${f}.${kind}.optional`) };
}

/** A relative path inside a volume: no '..' element, not absolute. */
function insidePath(v: unknown, field: string, allowEmpty: boolean): string {
  if (typeof v !== 'string' || (!allowEmpty && v === '')) throw invalidArgument('must be a relative path', { field });
  if (v.startsWith('/') || v.split('/').includes('..')) throw invalidArgument(`must be a relative path without '..', got ${JSON.stringify(v)}`, { field });
  return v;
}

function volumeMount(m: unknown, f: string): VolumeMount {
  if (!isObj(m)) throw invalidArgument('must be an object', { field: f });
  onlyKeys(m, ['name', 'mountPath', 'readOnly', 'subPath', 'subPathExpr', 'mountPropagation', 'recursiveReadOnly'], f);
  const name = requiredString(m.name, `${f}.name`);
  const mountPath = requiredString(m.mountPath, `${f}.mountPath`);
  if (!mountPath.startsWith('/')) throw invalidArgument(`must be an absolute path, got ${JSON.stringify(mountPath)}`, { field: `${f}.mountPath` });
  if (mountPath.includes(':')) throw invalidArgument('must not contain ":"', { field: `${f}.mountPath` });
  const subPath = insidePath(m.subPath ?? '', `${f}.subPath`, true);
  if (m.subPathExpr !== undefined && m.subPathExpr !== null && m.subPathExpr !== '') {
    if (subPath !== '') throw invalidArgument('may not be set together with subPath', { field: `${f}.subPathExpr` });
    insidePath(m.subPathExpr, `${f}.subPathExpr`, false);
  }
  const propagation = m.mountPropagation ?? 'None';
  if (propagation !== 'None' && propagation !== 'HostToContainer' && propagation !== 'Bidirectional') throw invalidArgument(`must be None, HostToContainer or Bidirectional, got ${JSON.stringify(propagation)}`, { field: `${f}.mountPropagation` });
  const readOnly = optionalBool(m.readOnly, `${f}.readOnly`);
  const rro = m.recursiveReadOnly ?? 'Disabled';
  if (rro !== 'Disabled' && rro !== 'IfPossible' && rro !== 'Enabled') throw invalidArgument(`must be Disabled, IfPossible or Enabled, got ${JSON.stringify(rro)}`, { field: `${f}.recursiveReadOnly` });
  if (rro !== 'Disabled' && (!readOnly || propagation !== 'None')) throw invalidArgument('needs readOnly: true and mountPropagation None', { field: `${f}.recursiveReadOnly` });
  return {
    name,
    mountPath,
    readOnly,
    subPath,
    ...(typeof m.subPathExpr === 'string' && m.subPathExpr !== '' ? { subPathExpr: m.subPathExpr } : {}),
    mountPropagation: propagation,
    recursiveReadOnly: rro !== 'Disabled',
  };
}

/** requests and limits (cpu in cores, memory and ephemeral-storage in bytes); requests default to the limits, as the API server defaults them. */
// ---- volumes ----

/** The volume sources the node carries out; any other is named in the refusal. */
const volumeKinds = ['emptyDir', 'configMap', 'secret', 'downwardAPI', 'projected', 'hostPath'] as const;

function fileMode(v: unknown, field: string, fallback: number | undefined): number | undefined {
  if (v === undefined || v === null) return fallback;
  if (!Number.isInteger(v) || (v as number) < 0 || (v as number) > 0o777) throw invalidArgument(`must be a file mode 0-0777 (octal; 0-511 in JSON), got ${JSON.stringify(v)}`, { field });
  return v as number;
}

function keyToPaths(v: unknown, f: string): KeyToPath[] | undefined {
  if (v === undefined || v === null) return undefined;
  return list(v, f).map((it, i) => {
    const itf = `${f}[${i}]`;
    if (!isObj(it)) throw invalidArgument('must be an object', { field: itf });
    onlyKeys(it, ['key', 'path', 'mode'], itf);
    const mode = fileMode(it.mode, `${itf}.mode`, undefined);
    return { key: requiredString(it.key, `${itf}.key`), path: insidePath(it.path, `${itf}.path`, false), ...(mode !== undefined ? { mode } : {}) };
  });
}

function downwardAPIFiles(v: unknown, f: string): DownwardAPIFile[] {
  return list(v, f).map((it, i) => {
    const itf = `${f}[${i}]`;
    if (!isObj(it)) throw invalidArgument('must be an object', { field: itf });
    onlyKeys(it, ['path', 'fieldRef', 'resourceFieldRef', 'mode'], itf);
    const path = insidePath(it.path, `${itf}.path`, false);
    const mode = fileMode(it.mode, `${itf}.mode`, undefined);
    const out: DownwardAPIFile = { path, ...(mode !== undefined ? { mode } : {}) };
    if ((it.fieldRef === undefined) === (it.resourceFieldRef === undefined)) throw invalidArgument('must name exactly one of fieldRef, resourceFieldRef', { field: itf });
    if (it.fieldRef !== undefined) {
      if (!isObj(it.fieldRef)) throw invalidArgument('must be an object', { field: `${itf}.fieldRef` });
      onlyKeys(it.fieldRef, ['fieldPath', 'apiVersion'], `${itf}.fieldRef`);
      const p = it.fieldRef.fieldPath;
      const known = typeof p === 'string' && ((volumeFieldPaths as readonly string[]).includes(p) || /^metadata\.(labels|annotations)\['[^']+'\]$/.test(p));
      if (!known) throw invalidArgument(`is not a pod field a downwardAPI volume can hold: ${JSON.stringify(p)}`, { field: `${itf}.fieldRef.fieldPath` });
      out.fieldRef = p as VolumeFieldPath;
    } else {
      if (!isObj(it.resourceFieldRef)) throw invalidArgument('must be an object', { field: `${itf}.resourceFieldRef` });
      out.resourceFieldRef = resourceFieldRef(it.resourceFieldRef, `${itf}.resourceFieldRef`, true);
    }
    return out;
  });
}

function projectedSource(s: unknown, f: string): ProjectedSource {
  if (!isObj(s)) throw invalidArgument('must be an object', { field: f });
  const kinds = Object.keys(s).filter((k) => s[k] !== undefined && s[k] !== null);
  if (kinds.length !== 1) throw invalidArgument('must name exactly one source', { field: f });
  const kind = kinds[0]!;
  const v = s[kind];
  const sf = `${f}.${kind}`;
  if (!isObj(v)) throw invalidArgument('must be an object', { field: sf });
  switch (kind) {
    case 'serviceAccountToken': {
      onlyKeys(v, ['audience', 'expirationSeconds', 'path'], sf);
      const exp = v.expirationSeconds ?? 3600;
      if (!Number.isInteger(exp) || (exp as number) < 600 || (exp as number) > 2 ** 32) throw invalidArgument('must be at least 600 seconds', { field: `${sf}.expirationSeconds` });
      if (v.audience !== undefined && typeof v.audience !== 'string') throw invalidArgument('must be a string', { field: `${sf}.audience` });
      return { kind, audience: (v.audience as string | undefined) ?? '', expirationSeconds: exp as number, path: insidePath(v.path, `${sf}.path`, false) };
    }
    case 'configMap':
    case 'secret': {
      onlyKeys(v, ['name', 'items', 'optional'], sf);
      const items = keyToPaths(v.items, `${sf}.items`);
      return { kind, name: requiredString(v.name, `${sf}.name`), ...(items ? { items } : {}), optional: optionalBool(v.optional, `${sf}.optional`) };
    }
    case 'downwardAPI':
      onlyKeys(v, ['items'], sf);
      return { kind, items: downwardAPIFiles(v.items, `${sf}.items`) };
    default:
      throw invalidArgument(`projected source ${kind} is not supported by this node`, { field: sf });
  }
}

function podVolume(v: unknown, f: string): PodVolume {
  if (!isObj(v)) throw invalidArgument('must be an object', { field: f });
  if (typeof v.name !== 'string' || !dnsLabel.test(v.name)) throw invalidArgument('must be a DNS label (lower-case letters, digits, -)', { field: `${f}.name` });
  const kinds = Object.keys(v).filter((k) => k !== 'name' && v[k] !== undefined && v[k] !== null);
  if (kinds.length === 0) throw invalidArgument('names no volume source', { field: f });
  if (kinds.length > 1) throw invalidArgument(`names more than one volume source: ${kinds.join(', ')}`, { field: f });
  const kind = kinds[0]! as (typeof volumeKinds)[number];
  if (!(volumeKinds as readonly string[]).includes(kind)) throw invalidArgument(`volume type ${kind} is not supported by this node`, { field: f });
  const s = v[kind];
  const sf = `${f}.${kind}`;
  if (!isObj(s)) throw invalidArgument('must be an object', { field: sf });
  const name = v.name;
  switch (kind) {
    case 'emptyDir': {
      onlyKeys(s, ['medium', 'sizeLimit'], sf);
      const medium = s.medium ?? '';
      if (medium !== '' && medium !== 'Memory') throw invalidArgument(`must be "" or Memory, got ${JSON.stringify(medium)}`, { field: `${sf}.medium` });
      const sizeLimit = s.sizeLimit === undefined || s.sizeLimit === null ? undefined : String(s.sizeLimit);
      if (sizeLimit !== undefined) parseQuantity(sizeLimit, `${sf}.sizeLimit`);
      return { name, source: { kind: 'emptyDir', medium, ...(sizeLimit !== undefined ? { sizeLimit } : {}) } };
    }
    case 'configMap':
    case 'secret': {
      const nameKey = kind === 'secret' ? 'secretName' : 'name';
      onlyKeys(s, [nameKey, 'items', 'defaultMode', 'optional'], sf);
      const items = keyToPaths(s.items, `${sf}.items`);
      return {
        name,
        source: { kind, name: requiredString(s[nameKey], `${sf}.${nameKey}`), ...(items ? { items } : {}), defaultMode: fileMode(s.defaultMode, `${sf}.defaultMode`, 0o644)!, optional: optionalBool(s.optional, `${sf}.optional`) },
      };
    }
    case 'downwardAPI':
      onlyKeys(s, ['items', 'defaultMode'], sf);
      return { name, source: { kind, items: downwardAPIFiles(s.items, `${sf}.items`), defaultMode: fileMode(s.defaultMode, `${sf}.defaultMode`, 0o644)! } };
    case 'projected': {
      onlyKeys(s, ['sources', 'defaultMode'], sf);
      const sources = list(s.sources, `${sf}.sources`).map((p, i) => projectedSource(p, `${sf}.sources[${i}]`));
      return { name, source: { kind, sources, defaultMode: fileMode(s.defaultMode, `${sf}.defaultMode`, 0o644)! } };
    }
    case 'hostPath': {
      onlyKeys(s, ['path', 'type'], sf);
      const path = requiredString(s.path, `${sf}.path`);
      if (!path.startsWith('/')) throw invalidArgument(`must be an absolute path, got ${JSON.stringify(path)}`, { field: `${sf}.path` });
      if (path.split('/').includes('..')) throw invalidArgument("must not contain '..'", { field: `${sf}.path` });
      const type = s.type ?? '';
      if (!(hostPathTypes as readonly unknown[]).includes(type)) throw invalidArgument(`must be one of ${hostPathTypes.filter(Boolean).join(', ')} or empty, got ${JSON.stringify(type)}`, { field: `${sf}.type` });
      return { name, source: { kind, path, type: type as HostPathType } };
    }
  }
}

/**
 * One manifest document as a pod; `source` (the file) and the text make its uid.
 * fromApi: an object the API server sent, whose apiVersion and kind may be absent
 * (the items of a LIST carry none: kube-apiserver v1.34.4 and v1.37.2 both leave them out) — the
 * collection it came from says what it is. A static pod file must name both.
 */
export function podFromObject(o: unknown, source: string, text: string, opts: { fromApi?: boolean } = {}): PodManifest {
  if (!isObj(o)) throw invalidArgument('a manifest must be an object', { field: 'kind' });
  const typeAbsent = o.apiVersion === undefined && o.kind === undefined;
  if (!(opts.fromApi && typeAbsent) && (o.apiVersion !== 'v1' || o.kind !== 'Pod')) throw invalidArgument(`must be apiVersion v1, kind Pod; got ${String(o.apiVersion)} ${String(o.kind)}`, { field: 'kind' });
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
  const security = podSecurityOf(spec.securityContext);
  const dnsPolicy = dnsPolicyOf(spec.dnsPolicy);
  const deadline = spec.activeDeadlineSeconds;
  if (deadline !== undefined && deadline !== null && (!Number.isInteger(deadline) || (deadline as number) < 1)) throw invalidArgument('must be a whole number of seconds, 1 or more', { field: 'spec.activeDeadlineSeconds' });
  const dnsConfig = dnsConfigOf(spec.dnsConfig, dnsPolicy);
  for (const k of ['hostIPC', 'hostPID', 'shareProcessNamespace'] as const) {
    if (spec[k] !== undefined && spec[k] !== null && typeof spec[k] !== 'boolean') throw invalidArgument('must be true or false', { field: `spec.${k}` });
  }
  if (spec.hostPID === true && spec.shareProcessNamespace === true) throw invalidArgument('cannot be set with hostPID', { field: 'spec.shareProcessNamespace' });
  if (spec.os !== undefined && spec.os !== null && (!isObj(spec.os) || spec.os.name !== 'linux')) throw invalidArgument('this node runs linux pods only', { field: 'spec.os.name' });
  if (!Array.isArray(spec.containers) || spec.containers.length === 0) throw invalidArgument('needs at least one container', { field: 'spec.containers' });
  const containers = spec.containers.map((c, i) => container(c, i, 'containers'));
  if (spec.initContainers !== undefined && spec.initContainers !== null && !Array.isArray(spec.initContainers)) throw invalidArgument('must be a list', { field: 'spec.initContainers' });
  const initContainers = (spec.initContainers ?? []).map((c: unknown, i: number) => container(c, i, 'initContainers'));
  // Init and app containers share one name space (API validation).
  const volumes = list(spec.volumes, 'spec.volumes').map((v, i) => podVolume(v, `spec.volumes[${i}]`));
  const volumeNames = new Map<string, PodVolume>();
  volumes.forEach((v, i) => {
    if (volumeNames.has(v.name)) throw invalidArgument(`the name ${v.name} is used twice`, { field: `spec.volumes[${i}].name` });
    volumeNames.set(v.name, v);
  });
  const mountsOf = [...containers.map((c, i) => ({ c, where: `spec.containers[${i}]` })), ...initContainers.map((c: PodContainer, i: number) => ({ c, where: `spec.initContainers[${i}]` }))];
  mountsOf.forEach(({ c, where }) =>
    c.volumeMounts.forEach((m, j) => {
      const field = `${where}.volumeMounts[${j}]`;
      const v = volumeNames.get(m.name);
      if (!v) throw invalidArgument(`names no volume of the pod: ${m.name}`, { field: `${field}.name` });
      if (m.mountPropagation === 'Bidirectional') throw invalidArgument('Bidirectional mount propagation is for privileged containers only, which this node does not run', { field: `${field}.mountPropagation` });
    }),
  );
  containers.forEach((c, i) =>
    [...c.env.entries()].forEach(([j, e]) => {
      if (e.valueFrom?.kind === 'resourceFieldRef' && e.valueFrom.containerName !== '' && e.valueFrom.containerName !== c.name) {
        throw invalidArgument(`must be this container's name (${c.name}) or empty`, { field: `spec.containers[${i}].env[${j}].valueFrom.resourceFieldRef.containerName` });
      }
    }),
  );
  for (const [i, v] of volumes.entries()) {
    const files = v.source.kind === 'downwardAPI' ? v.source.items : v.source.kind === 'projected' ? v.source.sources.flatMap((s) => (s.kind === 'downwardAPI' ? s.items : [])) : [];
    for (const d of files) {
      if (d.resourceFieldRef && !containers.some((c) => c.name === d.resourceFieldRef!.containerName)) {
        throw invalidArgument(`names no container of the pod: ${JSON.stringify(d.resourceFieldRef.containerName)}`, { field: `spec.volumes[${i}] (${d.path}).resourceFieldRef.containerName` });
      }
    }
  }
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
  if (md.uid !== undefined && md.uid !== '' && (typeof md.uid !== 'string' || !/^[0-9a-zA-Z-]{1,64}$/.test(md.uid))) throw invalidArgument('must be a uid (letters, digits and -)', { field: 'metadata.uid' });
  const imagePullSecrets = list(spec.imagePullSecrets, 'spec.imagePullSecrets').map((r, i) => {
    if (!isObj(r) || typeof r.name !== 'string' || !dnsSubdomain.test(r.name)) throw invalidArgument('must name a secret: { name: NAME }', { field: `spec.imagePullSecrets[${i}].name` });
    return r.name;
  });
  const serviceAccountName = spec.serviceAccountName ?? spec.serviceAccount ?? '';
  if (typeof serviceAccountName !== 'string' || (serviceAccountName !== '' && !dnsSubdomain.test(serviceAccountName))) throw invalidArgument('must be a DNS subdomain', { field: 'spec.serviceAccountName' });
  const hash = createHash('sha256').update(source).update('\0').update(text).digest('hex');
  return {
    name: md.name,
    namespace,
    // An API pod has the API server's uid; a static pod the hash of its text and place.
    uid: typeof md.uid === 'string' && md.uid !== '' ? md.uid : `${hash.slice(0, 8)}-${hash.slice(8, 12)}-${hash.slice(12, 16)}-${hash.slice(16, 20)}-${hash.slice(20, 32)}`,
    labels: stringMap(md.labels, 'metadata.labels'),
    annotations: stringMap(md.annotations, 'metadata.annotations'),
    restartPolicy: restartPolicy as PodManifest['restartPolicy'],
    hostNetwork: spec.hostNetwork === true,
    hostIPC: spec.hostIPC === true,
    hostPID: spec.hostPID === true,
    shareProcessNamespace: spec.shareProcessNamespace === true,
    security,
    enableServiceLinks: spec.enableServiceLinks !== false,
    dnsPolicy,
    ...(dnsConfig ? { dnsConfig } : {}),
    ...(typeof deadline === 'number' ? { activeDeadlineSeconds: deadline } : {}),
    ...(typeof spec.hostname === 'string' ? { hostname: spec.hostname } : {}),
    terminationGracePeriodSeconds: grace as number,
    initContainers,
    containers,
    raw: o,
    volumes,
    serviceAccountName,
    imagePullSecrets,
    ...(typeof md.deletionTimestamp === 'string' ? { deletionTimestamp: md.deletionTimestamp } : {}),
    ...(typeof deletionGrace === 'number' ? { deletionGracePeriodSeconds: deletionGrace } : {}),
  };
}

/** The pods of a manifest file (several YAML documents allowed); errors name the file, the document and the field. */
export function parseManifest(text: string, source: string): PodManifest[] {
  // YAML 1.1, as kubectl and kubelet read manifests (sigs.k8s.io/yaml): defaultMode: 0644 is octal.
  const docs = parseAllDocuments(text, { version: '1.1' });
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
