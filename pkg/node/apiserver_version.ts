import { VersionApi } from '@kubernetes/client-node';

import type { Logger } from '../log/logger.js';
import { type KubeApi, messageOf } from './kube_api.js';

// The kube-apiserver releases the node half works with: the four latest minor
// releases (Kubernetes' kubelet skew policy lets a kubelet be up to three minors
// older than its apiserver; operators upgrade the control plane first and run
// clusters of several releases for months). The cluster tests run against the
// oldest and the newest of these (versions.json "kubernetesOldest" and
// "kubernetes"; test/unit/apiserver_version.test.ts keeps the three in step).
// Outside the range the node half still runs, with a warning: an older server
// may lack fields and APIs it uses, a newer one may have removed some.

/** The oldest and newest kube-apiserver minor release (1.x) the node half supports. */
export const supportedApiServers = { oldest: { major: 1, minor: 34 }, newest: { major: 1, minor: 37 } } as const;

export const supportedRange = `v${supportedApiServers.oldest.major}.${supportedApiServers.oldest.minor} to v${supportedApiServers.newest.major}.${supportedApiServers.newest.minor}`;

export interface ServerVersion {
  gitVersion: string;
  major: number;
  minor: number;
}

/** /version's answer as a release (its gitVersion v1.34.4, else major "1" and minor "34+", as managed clusters report it). */
export function parseServerVersion(v: { gitVersion?: string; major?: string; minor?: string }): ServerVersion | undefined {
  const m = /^v(\d+)\.(\d+)\./.exec(v.gitVersion ?? '');
  if (m) return { gitVersion: v.gitVersion!, major: Number(m[1]), minor: Number(m[2]) };
  const major = /^(\d+)/.exec(v.major ?? '');
  const minor = /^(\d+)/.exec(v.minor ?? '');
  if (major && minor) return { gitVersion: v.gitVersion ?? `v${major[1]}.${minor[1]}`, major: Number(major[1]), minor: Number(minor[1]) };
  return undefined;
}

/** Is this release within the supported range? */
export function isSupported(v: ServerVersion): boolean {
  const { oldest, newest } = supportedApiServers;
  const n = (x: { major: number; minor: number }): number => x.major * 1000 + x.minor;
  return n(v) >= n(oldest) && n(v) <= n(newest);
}

/**
 * Asks the API server its version (GET /version) and logs it with the supported range:
 * info inside it, a warning outside it or when the server does not say. Never refuses:
 * the node half runs on, and what the server lacks fails where it is used, by name.
 */
export async function logServerVersion(api: KubeApi, log: Logger): Promise<ServerVersion | undefined> {
  let raw: { gitVersion?: string; major?: string; minor?: string };
  try {
    raw = await api.kc.makeApiClient(VersionApi).getCode();
  } catch (e: unknown) {
    log.warn('cannot ask the API server its version (GET /version)', { server: api.server, supported: supportedRange, error: messageOf(e) });
    return undefined;
  }
  const v = parseServerVersion(raw);
  if (!v) {
    log.warn('the API server does not say its version in a form this node reads', { server: api.server, version: JSON.stringify(raw), supported: supportedRange });
    return undefined;
  }
  if (isSupported(v)) log.info('kube-apiserver version', { server: api.server, version: v.gitVersion, supported: supportedRange });
  else log.warn('kube-apiserver version outside the supported range: some features may not work', { server: api.server, version: v.gitVersion, supported: supportedRange });
  return v;
}
