import { readFile } from 'node:fs/promises';

import {
  ApiException,
  AuthenticationV1Api,
  AuthorizationV1Api,
  CoordinationV1Api,
  CoreV1Api,
  KubeConfig,
  PatchStrategy,
  setHeaderOptions,
} from '@kubernetes/client-node';

import { invalidArgument } from '../errdefs/errors.js';

// The node half's view of the kube-apiserver: one KubeConfig (the node's
// credentials: a client certificate for system:node:<name>, or a token) and
// the typed APIs made from it. Objects cross this boundary as plain JSON
// (what the apiserver sends and takes): the generated client's model classes
// turn timestamps into Dates on read and drop fields they do not know on
// write, so reads are normalised and writes go as patches or `any` bodies.

export type Json = Record<string, unknown>;

export interface KubeApi {
  kc: KubeConfig;
  server: string;
  core: CoreV1Api;
  coordination: CoordinationV1Api;
  authentication: AuthenticationV1Api;
  authorization: AuthorizationV1Api;
}

/** A kubeconfig file as the node's credentials; errors name the file. */
export async function loadKubeApi(file: string): Promise<KubeApi> {
  const text = await readFile(file, 'utf8').catch((e: NodeJS.ErrnoException) => {
    throw invalidArgument(`cannot read the kubeconfig ${file}: ${e.code ?? e.message}`, { field: '--kubeconfig' });
  });
  const kc = new KubeConfig();
  try {
    kc.loadFromString(text);
  } catch (e: unknown) {
    throw invalidArgument(`${file} is not a kubeconfig: ${(e as Error).message}`, { field: '--kubeconfig' });
  }
  const cluster = kc.getCurrentCluster();
  if (!cluster) throw invalidArgument(`${file} has no current context with a cluster`, { field: '--kubeconfig' });
  // Relative certificate paths are relative to the kubeconfig's folder (kubectl's rule).
  kc.makePathsAbsolute(file.slice(0, Math.max(0, file.lastIndexOf('/'))) || '.');
  return apiOf(kc);
}

export function apiOf(kc: KubeConfig): KubeApi {
  return {
    kc,
    server: kc.getCurrentCluster()?.server ?? '',
    core: kc.makeApiClient(CoreV1Api),
    coordination: kc.makeApiClient(CoordinationV1Api),
    authentication: kc.makeApiClient(AuthenticationV1Api),
    authorization: kc.makeApiClient(AuthorizationV1Api),
  };
}

/** Options for a strategic merge patch (the generated client sends JSON patch otherwise). */
export const strategicMerge = () => setHeaderOptions('Content-Type', PatchStrategy.StrategicMergePatch);
export const mergePatch = () => setHeaderOptions('Content-Type', PatchStrategy.MergePatch);

/** The HTTP status of a failed API call (0: no answer at all). */
export function statusOf(e: unknown): number {
  return e instanceof ApiException ? e.code : typeof (e as { code?: unknown })?.code === 'number' ? ((e as { code: number }).code ?? 0) : 0;
}

/** The apiserver's own message of a failed call (its Status.message), else the error's. */
export function messageOf(e: unknown): string {
  if (e instanceof ApiException) {
    const body = e.body as unknown;
    const parsed = typeof body === 'string' ? (() => { try { return JSON.parse(body) as { message?: string }; } catch { return undefined; } })() : (body as { message?: string } | undefined);
    return `${e.code}: ${parsed?.message ?? (typeof body === 'string' ? body.slice(0, 200) : e.message)}`;
  }
  return (e as Error)?.message ?? String(e);
}

/** Plain JSON of an object the generated client returned (Dates back to RFC 3339 strings). */
export function plain<T = Json>(o: unknown): T {
  return JSON.parse(JSON.stringify(o, (_k, v: unknown) => (v instanceof Date ? rfc3339(v) : v))) as T;
}

/** metav1.Time: seconds. */
export function rfc3339(d: Date): string {
  return d.toISOString().replace(/\.\d{3}Z$/, 'Z');
}

/** metav1.MicroTime: exactly six fractional digits (the apiserver's parser wants them). */
export function microTime(d: Date): string {
  return d.toISOString().replace(/\.(\d{3})Z$/, '.$1000Z');
}

/**
 * A call that fails when the API server does not answer in time (the
 * generated client has no timeout of its own): a node must never wait on an
 * API server that went away without closing its connections.
 */
export function timely<T>(p: Promise<T>, what: string, timeoutMs = 10000): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<never>((_r, reject) => {
    timer = setTimeout(() => reject(new Error(`${what}: the API server did not answer within ${timeoutMs / 1000} s`)), timeoutMs);
  });
  return Promise.race([p, timeout]).finally(() => clearTimeout(timer));
}
