import { invalidArgument } from '../errdefs/errors.js';
import type { ProbeSpec } from './prober.js';
import { parseQuantity } from './quantity.js';

// The parts of a container spec that drive its life on the node rather than
// its making: probes, lifecycle hooks, resources, the termination message and
// an init container's restartPolicy. Checked as the API server validates them
// and defaulted as it defaults them, so a static pod and a pod from the API
// server look the same to the pod worker.

type Obj = Record<string, unknown>;
const isObj = (v: unknown): v is Obj => typeof v === 'object' && v !== null && !Array.isArray(v);

export interface Probe {
  handler: ProbeSpec;
  initialDelaySeconds: number;
  periodSeconds: number;
  timeoutSeconds: number;
  successThreshold: number;
  failureThreshold: number;
  /** A liveness or startup probe's own grace for the kill it causes (else the pod's). */
  terminationGracePeriodSeconds?: number;
}

export type LifecycleHandler = ProbeSpec | { kind: 'sleep'; seconds: number };

export interface ResourceList {
  /** Cores. */
  cpu?: number;
  /** Bytes. */
  memory?: number;
  /** Bytes. */
  'ephemeral-storage'?: number;
}

export interface ContainerLifecycleSpec {
  livenessProbe?: Probe;
  readinessProbe?: Probe;
  startupProbe?: Probe;
  lifecycle: { postStart?: LifecycleHandler; preStop?: LifecycleHandler };
  /** Requests default to the limits, as the API server defaults them. */
  resources: { requests: ResourceList; limits: ResourceList };
  terminationMessagePath: string;
  terminationMessagePolicy: 'File' | 'FallbackToLogsOnError';
  /** Only an init container's: Always makes it a sidecar (kept running beside the app containers). */
  restartPolicy?: 'Always';
}

/** The container fields this file reads (added to what pod_manifest.ts accepts). */
export const lifecycleContainerFields = ['livenessProbe', 'readinessProbe', 'startupProbe', 'lifecycle', 'resources', 'terminationMessagePath', 'terminationMessagePolicy', 'restartPolicy'] as const;

const ianaSvcName = /^(?=.*[a-z])[a-z0-9]([a-z0-9-]{0,13}[a-z0-9])?$/;

function seconds(v: unknown, field: string, dflt: number, min: number): number {
  // The API server defaults an unset or zero field (a zero period would mean "never").
  if (v === undefined || v === null || (v === 0 && dflt !== 0)) return dflt;
  if (!Number.isInteger(v) || (v as number) < min) throw invalidArgument(`must be a whole number ${min} or more, got ${JSON.stringify(v)}`, { field });
  return v as number;
}

function onePort(v: unknown, field: string, named: ReadonlyMap<string, number>, allowName: boolean): number {
  if (Number.isInteger(v) && (v as number) >= 1 && (v as number) <= 65535) return v as number;
  if (allowName && typeof v === 'string') {
    if (/^\d+$/.test(v)) return onePort(Number(v), field, named, false);
    if (!ianaSvcName.test(v)) throw invalidArgument(`must be a port number 1-65535 or a port name (IANA_SVC_NAME), got ${JSON.stringify(v)}`, { field });
    const p = named.get(v);
    if (p === undefined) throw invalidArgument(`names no port of the container: ${JSON.stringify(v)}`, { field });
    return p;
  }
  throw invalidArgument(`must be a port number 1-65535${allowName ? ' or a port name' : ''}, got ${JSON.stringify(v)}`, { field });
}

function optString(v: unknown, field: string): string | undefined {
  if (v === undefined || v === null || v === '') return undefined;
  if (typeof v !== 'string') throw invalidArgument('must be a string', { field });
  return v;
}

/** exec | httpGet | tcpSocket | grpc (probes) or exec | httpGet | sleep (hooks): exactly one. */
function handler(o: Obj, f: string, kinds: readonly string[], named: ReadonlyMap<string, number>): LifecycleHandler {
  const given = kinds.filter((k) => o[k] !== undefined && o[k] !== null);
  if (given.length !== 1) throw invalidArgument(`must have exactly one handler of ${kinds.join(', ')}${given.length > 1 ? `; got ${given.join(' and ')}` : ''}`, { field: f });
  const kind = given[0]!;
  const h = o[kind];
  const hf = `${f}.${kind}`;
  if (!isObj(h)) throw invalidArgument('must be an object', { field: hf });
  switch (kind) {
    case 'exec': {
      const command = h.command;
      if (!Array.isArray(command) || command.length === 0 || command.some((x) => typeof x !== 'string')) throw invalidArgument('is required: a non-empty list of strings', { field: `${hf}.command` });
      return { kind: 'exec', command: command as string[] };
    }
    case 'httpGet': {
      const scheme = h.scheme ?? 'HTTP';
      if (scheme !== 'HTTP' && scheme !== 'HTTPS') throw invalidArgument(`must be HTTP or HTTPS, got ${JSON.stringify(scheme)}`, { field: `${hf}.scheme` });
      const headers = h.httpHeaders ?? [];
      if (!Array.isArray(headers)) throw invalidArgument('must be a list', { field: `${hf}.httpHeaders` });
      const httpHeaders = headers.map((x: unknown, i: number) => {
        if (!isObj(x) || typeof x.name !== 'string' || !/^[-!#$%&'*+.^_`|~0-9A-Za-z]+$/.test(x.name)) throw invalidArgument('must be a valid HTTP header name', { field: `${hf}.httpHeaders[${i}].name` });
        if (typeof x.value !== 'string') throw invalidArgument('must be a string', { field: `${hf}.httpHeaders[${i}].value` });
        return { name: x.name, value: x.value };
      });
      const path = optString(h.path, `${hf}.path`) ?? '/';
      const host = optString(h.host, `${hf}.host`);
      return { kind: 'httpGet', path, port: onePort(h.port, `${hf}.port`, named, true), ...(host ? { host } : {}), scheme, httpHeaders };
    }
    case 'tcpSocket': {
      const host = optString(h.host, `${hf}.host`);
      return { kind: 'tcpSocket', port: onePort(h.port, `${hf}.port`, named, true), ...(host ? { host } : {}) };
    }
    case 'grpc': {
      const service = optString(h.service, `${hf}.service`);
      return { kind: 'grpc', port: onePort(h.port, `${hf}.port`, named, false), ...(service ? { service } : {}) };
    }
    default: {
      if (h.seconds === undefined || !Number.isInteger(h.seconds) || (h.seconds as number) < 0) throw invalidArgument(`must be a whole number of seconds, 0 or more, got ${JSON.stringify(h.seconds)}`, { field: `${hf}.seconds` });
      return { kind: 'sleep', seconds: h.seconds as number };
    }
  }
}

function probe(v: unknown, f: string, kind: 'liveness' | 'readiness' | 'startup', named: ReadonlyMap<string, number>): Probe | undefined {
  if (v === undefined || v === null) return undefined;
  if (!isObj(v)) throw invalidArgument('must be an object', { field: f });
  const known = new Set(['exec', 'httpGet', 'tcpSocket', 'grpc', 'initialDelaySeconds', 'periodSeconds', 'timeoutSeconds', 'successThreshold', 'failureThreshold', 'terminationGracePeriodSeconds']);
  for (const k of Object.keys(v)) if (!known.has(k)) throw invalidArgument('is not a probe field', { field: `${f}.${k}` });
  const successThreshold = seconds(v.successThreshold, `${f}.successThreshold`, 1, 1);
  // A liveness or startup probe passes on one success (API validation).
  if (kind !== 'readiness' && successThreshold !== 1) throw invalidArgument(`must be 1 for a ${kind} probe, got ${successThreshold}`, { field: `${f}.successThreshold` });
  let grace: number | undefined;
  if (v.terminationGracePeriodSeconds !== undefined && v.terminationGracePeriodSeconds !== null) {
    if (kind === 'readiness') throw invalidArgument('must not be set for a readiness probe', { field: `${f}.terminationGracePeriodSeconds` });
    if (!Number.isInteger(v.terminationGracePeriodSeconds) || (v.terminationGracePeriodSeconds as number) < 1) throw invalidArgument('must be a whole number of seconds greater than 0', { field: `${f}.terminationGracePeriodSeconds` });
    grace = v.terminationGracePeriodSeconds as number;
  }
  return {
    handler: handler(v, f, ['exec', 'httpGet', 'tcpSocket', 'grpc'], named) as ProbeSpec,
    initialDelaySeconds: seconds(v.initialDelaySeconds, `${f}.initialDelaySeconds`, 0, 0),
    periodSeconds: seconds(v.periodSeconds, `${f}.periodSeconds`, 10, 1),
    timeoutSeconds: seconds(v.timeoutSeconds, `${f}.timeoutSeconds`, 1, 1),
    successThreshold,
    failureThreshold: seconds(v.failureThreshold, `${f}.failureThreshold`, 3, 1),
    ...(grace !== undefined ? { terminationGracePeriodSeconds: grace } : {}),
  };
}

const resourceNames = ['cpu', 'memory', 'ephemeral-storage'] as const;

function resourceList(v: unknown, f: string): ResourceList {
  if (v === undefined || v === null) return {};
  if (!isObj(v)) throw invalidArgument('must be a map of resource names to quantities', { field: f });
  const out: ResourceList = {};
  for (const [k, q] of Object.entries(v)) {
    if (!(resourceNames as readonly string[]).includes(k)) throw invalidArgument(`is not a resource this node handles (${resourceNames.join(', ')})`, { field: `${f}.${k}` });
    out[k as (typeof resourceNames)[number]] = parseQuantity(q, `${f}.${k}`);
  }
  return out;
}

function resources(v: unknown, f: string): ContainerLifecycleSpec['resources'] {
  if (v === undefined || v === null) return { requests: {}, limits: {} };
  if (!isObj(v)) throw invalidArgument('must be an object', { field: f });
  for (const k of Object.keys(v)) if (k !== 'requests' && k !== 'limits') throw invalidArgument('is not supported by this node yet', { field: `${f}.${k}` });
  const limits = resourceList(v.limits, `${f}.limits`);
  const requests = { ...limits, ...resourceList(v.requests, `${f}.requests`) };
  for (const k of resourceNames) {
    const r = requests[k];
    const l = limits[k];
    if (r !== undefined && l !== undefined && r > l) throw invalidArgument(`must be less than or equal to the ${k} limit`, { field: `${f}.requests.${k}` });
  }
  return { requests, limits };
}

/**
 * The lifecycle fields of container `c` at field path `f`; `ports` resolves
 * named probe ports. An init container takes probes and hooks only as a
 * sidecar (restartPolicy Always), as the API server requires.
 */
export function containerLifecycleSpec(c: Obj, f: string, ports: ReadonlyArray<{ name?: string; containerPort: number }>, init: boolean): ContainerLifecycleSpec {
  const named = new Map(ports.flatMap((p) => (p.name ? [[p.name, p.containerPort] as const] : [])));
  let restartPolicy: 'Always' | undefined;
  if (c.restartPolicy !== undefined && c.restartPolicy !== null) {
    if (!init) throw invalidArgument('is only supported for init containers (sidecars)', { field: `${f}.restartPolicy` });
    if (c.restartPolicy !== 'Always') throw invalidArgument(`must be Always, got ${JSON.stringify(c.restartPolicy)}`, { field: `${f}.restartPolicy` });
    restartPolicy = 'Always';
  }
  if (init && !restartPolicy) {
    for (const k of ['livenessProbe', 'readinessProbe', 'startupProbe', 'lifecycle']) {
      if (c[k] !== undefined && c[k] !== null) throw invalidArgument('may not be set for init containers without restartPolicy: Always', { field: `${f}.${k}` });
    }
  }
  const lc = c.lifecycle;
  if (lc !== undefined && lc !== null && !isObj(lc)) throw invalidArgument('must be an object', { field: `${f}.lifecycle` });
  const hook = (k: 'postStart' | 'preStop'): LifecycleHandler | undefined => {
    const h = isObj(lc) ? lc[k] : undefined;
    if (h === undefined || h === null) return undefined;
    if (!isObj(h)) throw invalidArgument('must be an object', { field: `${f}.lifecycle.${k}` });
    return handler(h, `${f}.lifecycle.${k}`, ['exec', 'httpGet', 'sleep'], named);
  };
  if (isObj(lc)) for (const k of Object.keys(lc)) if (k !== 'postStart' && k !== 'preStop' && k !== 'stopSignal') throw invalidArgument('is not a lifecycle hook', { field: `${f}.lifecycle.${k}` });
  const postStart = hook('postStart');
  const preStop = hook('preStop');
  const policy = c.terminationMessagePolicy ?? 'File';
  if (policy !== 'File' && policy !== 'FallbackToLogsOnError') throw invalidArgument(`must be File or FallbackToLogsOnError, got ${JSON.stringify(policy)}`, { field: `${f}.terminationMessagePolicy` });
  const path = c.terminationMessagePath ?? '/dev/termination-log';
  if (typeof path !== 'string' || !path.startsWith('/')) throw invalidArgument('must be an absolute path', { field: `${f}.terminationMessagePath` });
  const liveness = probe(c.livenessProbe, `${f}.livenessProbe`, 'liveness', named);
  const readiness = probe(c.readinessProbe, `${f}.readinessProbe`, 'readiness', named);
  const startup = probe(c.startupProbe, `${f}.startupProbe`, 'startup', named);
  return {
    ...(liveness ? { livenessProbe: liveness } : {}),
    ...(readiness ? { readinessProbe: readiness } : {}),
    ...(startup ? { startupProbe: startup } : {}),
    lifecycle: { ...(postStart ? { postStart } : {}), ...(preStop ? { preStop } : {}) },
    resources: resources(c.resources, `${f}.resources`),
    terminationMessagePath: path,
    terminationMessagePolicy: policy,
    ...(restartPolicy ? { restartPolicy } : {}),
  };
}
