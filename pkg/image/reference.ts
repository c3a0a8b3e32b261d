import { invalidArgument } from '../errdefs/errors.js';

// Image references as the Docker/OCI distribution reference grammar defines
// them, normalised the way containerd and kubelet do: a name without a
// registry is on docker.io, a one-component docker.io name is under library/,
// and a name with neither tag nor digest means :latest.
//   busybox            → docker.io/library/busybox:latest
//   quay.io/a/b@sha256:…  stays pinned to the digest

export const dockerHubDomain = 'docker.io';

export interface ImageReference {
  /** Registry host[:port], e.g. "docker.io", "192.168.213.2:5000". */
  domain: string;
  /** Repository path, e.g. "library/busybox". */
  path: string;
  tag: string | undefined;
  digest: string | undefined;
}

const component = /^[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*$/;
const tagPattern = /^[\w][\w.-]{0,127}$/;
const digestPattern = /^[a-z0-9]+(?:[.+_-][a-z0-9]+)*:[a-zA-Z0-9=_-]{32,}$/;
const domainPattern = /^(?:[a-zA-Z0-9](?:[a-zA-Z0-9-]*[a-zA-Z0-9])?)(?:\.(?:[a-zA-Z0-9](?:[a-zA-Z0-9-]*[a-zA-Z0-9])?))*(?::\d+)?$|^\[[0-9a-fA-F:]+\](?::\d+)?$/;

/** Parses and normalises `ref`; `field` names the request field in errors. */
export function parseReference(ref: string, field = 'image'): ImageReference {
  const bad = (why: string): Error => invalidArgument(`invalid image reference "${ref}": ${why}`, { field });
  if (ref === '') throw bad('empty');
  if (ref.length > 4096) throw bad('too long');
  let rest = ref;
  let digest: string | undefined;
  const at = rest.indexOf('@');
  if (at >= 0) {
    digest = rest.slice(at + 1);
    rest = rest.slice(0, at);
    if (!digestPattern.test(digest)) throw bad(`"${digest}" is not a digest`);
    if (digest.startsWith('sha256:') && !/^sha256:[a-f0-9]{64}$/.test(digest)) throw bad(`"${digest}" is not a sha256 digest`);
  }
  let tag: string | undefined;
  const slash = rest.lastIndexOf('/');
  const colon = rest.lastIndexOf(':');
  if (colon > slash) {
    tag = rest.slice(colon + 1);
    rest = rest.slice(0, colon);
    if (!tagPattern.test(tag)) throw bad(`"${tag}" is not a valid tag`);
  }
  // The grammar's limit (distribution's NameTotalLengthMax): a longer name is refused here, not sent to a registry that answers 500.
  if (rest.length > 255) throw bad(`the name is ${rest.length} characters; at most 255`);
  const parts = rest.split('/');
  let domain = dockerHubDomain;
  const first = parts[0]!;
  if (parts.length > 1 && (first.includes('.') || first.includes(':') || first === 'localhost' || first !== first.toLowerCase())) {
    if (!domainPattern.test(first)) throw bad(`"${first}" is not a registry host`);
    domain = first;
    parts.shift();
  }
  if (domain === 'index.docker.io') domain = dockerHubDomain;
  if (parts.length === 0 || parts.some((p) => !component.test(p))) {
    throw bad('repository names are lowercase letters, digits and separators (. _ __ -) between components');
  }
  if (domain === dockerHubDomain && parts.length === 1) parts.unshift('library');
  if (tag === undefined && digest === undefined) tag = 'latest';
  return { domain, path: parts.join('/'), tag, digest };
}

/** "domain/path" */
export function repositoryOf(r: ImageReference): string {
  return `${r.domain}/${r.path}`;
}

/** The canonical string: domain/path[:tag][@digest]. */
export function formatReference(r: ImageReference): string {
  return `${repositoryOf(r)}${r.tag !== undefined ? `:${r.tag}` : ''}${r.digest !== undefined ? `@${r.digest}` : ''}`;
}

/** "domain/path:tag", the form CRI repo_tags use; undefined for a digest-only reference. */
export function tagReference(r: ImageReference): string | undefined {
  return r.tag === undefined ? undefined : `${repositoryOf(r)}:${r.tag}`;
}

/** An image id or a unique-enough prefix of one, as `crictl rmi`/`inspecti` accept: "sha256:<hex>", "<hex>". */
export function asImageId(s: string): string | undefined {
  const m = /^(?:sha256:)?([a-f0-9]{12,64})$/.exec(s);
  return m ? m[1] : undefined;
}
