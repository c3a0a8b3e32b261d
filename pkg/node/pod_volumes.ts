import { execFile } from 'node:child_process';
import type { BigIntStats } from 'node:fs';
import { createHash } from 'node:crypto';
import { chmod, lstat, mkdir, open, readdir, readFile, realpath, rename, rm, stat, statfs, writeFile } from 'node:fs/promises';
import { dirname, join, sep } from 'node:path';
import { promisify } from 'node:util';

import { DomainError, failedPrecondition, invalidArgument, notFound, permissionDenied } from '../errdefs/errors.js';
import { openBeneath, pathOf } from '../safepath/beneath.js';
import { encodeMountRoots, identityOf, type MountRoot, mountRootsAnnotation } from '../safepath/mount_roots.js';
import { type Payload, writeAtomically } from './atomic_writer.js';
import { type ConfigObjects, expand, fieldValue, type KeyValue, type NodeAllocatable, resourceValue } from './pod_env.js';
import type { DownwardAPIFile, HostPathType, KeyToPath, PodContainer, PodManifest, PodVolume } from './pod_manifest.js';

// A pod's volumes on the node, as kubelet prepares them before the pod's
// sandbox and containers, for the runtime to bind-mount:
//   emptyDir            <root>/<podUid>/volumes/<name>        (disk)
//   emptyDir Memory     <memoryRoot>/<podUid>/volumes/<name>  (tmpfs)
//   configMap           <root>/...        secret, projected  <memoryRoot>/...
//   downwardAPI         <root>/...        hostPath           the path itself
// Secrets and tokens never touch the disk: kubelet keeps them on a tmpfs, and
// memoryRoot is one (see memoryVolumeRoot). API data volumes are written by
// the atomic writer (atomic_writer.ts) and mounted read-only, as kubelet does.
//
// Every path handed to the runtime must be visible in the node namespace,
// where the runtime half runs: rootlesskit gives it copies of /etc and /run
// (--copy-up, pkg/netns/rootlesskit/driver.ts) that are symlinks into the
// original trees as they were when it started. The user's folders, /tmp,
// /dev/shm and $XDG_RUNTIME_DIR (through /run/user, a symlink into the
// original /run) are shared; a new top-level entry of /etc or /run is not.

/** The API objects volumes and env read; implemented with the API client, undefined for a node without a control plane. */
export interface ClusterObjects extends ConfigObjects {
  /** The TokenRequest API, a token bound to the pod. */
  serviceAccountToken(namespace: string, serviceAccount: string, r: { audiences: string[]; expirationSeconds: number; podName: string; podUid: string }): Promise<{ token: string; expiresAt: Date }>;
}

/** runtime.v1.Mount as the node half sends it. */
export interface CriMount {
  containerPath: string;
  hostPath: string;
  readonly: boolean;
  propagation: 'PROPAGATION_PRIVATE' | 'PROPAGATION_HOST_TO_CONTAINER' | 'PROPAGATION_BIDIRECTIONAL';
  selinuxRelabel: false;
  recursiveReadOnly: boolean;
  /**
   * Not a CRI field: the volume the host path lies in, as checked here.
   * criMountsOf moves it into the container's mount-roots annotation, so the
   * runtime opens the path beneath it (safepath/mount_roots.ts).
   */
  volume?: MountRoot;
}

/** The CRI mounts without their volume roots, and the annotation that carries those roots. */
export function criMountsOf(mounts: readonly CriMount[]): { mounts: CriMount[]; annotations: Record<string, string> } {
  const roots = new Map(mounts.flatMap((m) => (m.volume ? [[m.containerPath, m.volume] as const] : [])));
  return {
    mounts: mounts.map(({ volume: _volume, ...m }) => m),
    annotations: roots.size > 0 ? { [mountRootsAnnotation]: encodeMountRoots(roots) } : {},
  };
}

export interface VolumeRoots {
  /** On disk: emptyDir, configMap, downwardAPI. */
  root: string;
  /** On a tmpfs: Memory emptyDir, secret, projected (tokens). */
  memoryRoot: string;
}

export interface VolumeSetUp extends VolumeRoots {
  cluster?: ClusterObjects;
  /** The node's user: hostPaths must be theirs. */
  uid: number;
  now?: () => number;
  /** For downwardAPI resourceFieldRefs to unset limits. */
  allocatable?: NodeAllocatable;
  /**
   * Content from the API server already written (by an earlier agent, for a
   * pod that kept running) is used as it is, not fetched first: an agent
   * restart while the API server is away must not hold the pods up. The
   * next refresh brings it up to date.
   */
  reuseWritten?: boolean;
}

export interface PodVolumes {
  /** The container's volume mounts; subPathExpr is expanded with its env. Makes missing subPath folders, as kubelet does. */
  mounts(container: PodContainer, env?: readonly KeyValue[]): Promise<CriMount[]>;
  /** What the node cannot enforce rootless (an emptyDir sizeLimit), to report once. */
  notes: string[];
}

/** Trees rootlesskit copies for the node namespace (--copy-up); paths under them are visible there only if they existed when it started. */
const copiedUpTrees = ['/etc', '/run'];

const volumeError = (e: unknown, field: string): Error => {
  const msg = e instanceof Error ? e.message : String(e);
  return e instanceof DomainError ? new DomainError(e.code, `${field}: ${msg}`, { field, cause: e }) : failedPrecondition(`${field}: ${msg}`, { field, cause: e });
};

const podDir = (base: string, podUid: string): string => join(base, podUid);
const volumeDir = (base: string, podUid: string, name: string): string => join(base, podUid, 'volumes', name);

/**
 * The tmpfs for memory-backed volumes: $XDG_RUNTIME_DIR's folder when it is
 * a tmpfs (systemd's user runtime folder), else a folder of this agent's own
 * on /dev/shm (a tmpfs on every Linux, shared with the node namespace).
 */
export async function memoryVolumeRoot(runtimeDir: string, uid: number): Promise<string> {
  const tmpfs = 0x01021994;
  const fs = await statfs(runtimeDir).catch(() => undefined);
  if (fs?.type === tmpfs) return join(runtimeDir, 'volumes');
  // One folder per agent (its runtime folder): two nodes of one user keep apart.
  return `/dev/shm/usernode-${uid}-${createHash('sha256').update(runtimeDir).digest('hex').slice(0, 12)}`;
}

/** A root folder of the user's own, made 0700: /dev/shm is shared, so one made by someone else is refused. */
async function ownRoot(dir: string, uid: number): Promise<void> {
  await mkdir(dir, { recursive: true, mode: 0o700 });
  const st = await lstat(dir);
  if (!st.isDirectory() || st.uid !== uid) {
    throw permissionDenied(`${dir} must be a folder of uid ${uid} (it holds pod secrets); it is ${st.isDirectory() ? `owned by uid ${st.uid}` : 'not a folder'}`, { field: dir });
  }
  if ((st.mode & 0o077) !== 0) await chmod(dir, 0o700);
}

interface TokenState {
  token: string;
  issuedAt: number;
  expiresAt: number;
  audience: string;
  expirationSeconds: number;
}

/** Sets up (or refreshes: configMap and secret changes, tokens at 80% of their life) the pod's volumes. Idempotent. */
export async function setUpPodVolumes(pod: PodManifest, d: VolumeSetUp): Promise<PodVolumes> {
  const now = d.now ?? Date.now;
  const paths = new Map<string, VolumePath>();
  const notes: string[] = [];
  if (pod.volumes.length > 0) {
    await ownRoot(d.root, d.uid);
    await ownRoot(d.memoryRoot, d.uid);
  }
  for (const [i, v] of pod.volumes.entries()) {
    const field = `spec.volumes[${i}]`;
    try {
      paths.set(v.name, await setUpVolume(pod, v, field, d, now, notes));
    } catch (e: unknown) {
      throw volumeError(e, `${field} (volume ${v.name})`);
    }
  }
  return {
    notes,
    mounts: async (container, env = []) => {
      const vars = new Map(env.map((e) => [e.key, e.value]));
      const out: CriMount[] = [];
      for (const [j, m] of container.volumeMounts.entries()) {
        const field = `spec.containers[${pod.containers.indexOf(container)}].volumeMounts[${j}]`;
        const v = paths.get(m.name);
        if (!v) throw notFound(`${field}: volume ${m.name} is not set up`, { field: `${field}.name` });
        let sub = m.subPath;
        if (m.subPathExpr !== undefined) {
          sub = expand(m.subPathExpr, (n) => vars.get(n));
          if (sub.startsWith('/') || sub.split('/').includes('..')) throw invalidArgument(`${field}.subPathExpr: expands to ${JSON.stringify(sub)}, which leaves the volume`, { field: `${field}.subPathExpr` });
        }
        const volume = await rootOf(v.hostPath, v.identity);
        out.push({
          containerPath: m.mountPath,
          hostPath: sub === '' ? volume.root : await subPathIn(volume, sub, `${field}.${m.subPathExpr !== undefined ? 'subPathExpr' : 'subPath'}`),
          // kubelet mounts API data volumes read-only whatever the mount says.
          readonly: m.readOnly || v.apiData,
          propagation: m.mountPropagation === 'HostToContainer' ? 'PROPAGATION_HOST_TO_CONTAINER' : m.mountPropagation === 'Bidirectional' ? 'PROPAGATION_BIDIRECTIONAL' : 'PROPAGATION_PRIVATE',
          selinuxRelabel: false,
          recursiveReadOnly: m.recursiveReadOnly,
          volume,
        });
      }
      return out;
    },
  };
}

interface VolumePath {
  hostPath: string;
  apiData: boolean;
  /** A hostPath's identity when its checks passed: the runtime refuses another file there. */
  identity?: string;
}

/** The volume's folder resolved, and the identity the runtime must find there (checked now, or when a hostPath was). */
async function rootOf(hostPath: string, identity: string | undefined): Promise<MountRoot> {
  const root = await realpath(hostPath);
  return { root, identity: identity ?? identityOf(await stat(root, { bigint: true })) };
}

async function setUpVolume(pod: PodManifest, v: PodVolume, field: string, d: VolumeSetUp, now: () => number, notes: string[]): Promise<VolumePath> {
  const s = v.source;
  if (d.reuseWritten && (s.kind === 'configMap' || s.kind === 'secret' || s.kind === 'projected')) {
    const dir = volumeDir(s.kind === 'configMap' ? d.root : d.memoryRoot, pod.uid, v.name);
    if (await lstat(join(dir, '..data')).then(() => true, () => false)) return { hostPath: dir, apiData: true };
  }
  switch (s.kind) {
    case 'emptyDir': {
      const dir = volumeDir(s.medium === 'Memory' ? d.memoryRoot : d.root, pod.uid, v.name);
      // World-writable, as kubelet makes it: any user of any container may write (the pod folder is the user's, 0700).
      await mkdir(dir, { recursive: true, mode: 0o777 });
      const st = await stat(dir);
      if ((st.mode & 0o777) !== 0o777) await chmod(dir, 0o777);
      if (s.sizeLimit !== undefined) notes.push(`${field}.emptyDir.sizeLimit ${s.sizeLimit} is not enforced: a rootless node cannot mount a tmpfs of its own or evict by disk usage yet`);
      return { hostPath: dir, apiData: false };
    }
    case 'configMap':
    case 'secret': {
      const files = await objectFiles(pod, s.kind, s.name, s.items, s.defaultMode, s.optional, `${field}.${s.kind}`, d.cluster);
      const dir = volumeDir(s.kind === 'secret' ? d.memoryRoot : d.root, pod.uid, v.name);
      await writeAtomically(dir, files, now);
      return { hostPath: dir, apiData: true };
    }
    case 'downwardAPI': {
      const dir = volumeDir(d.root, pod.uid, v.name);
      await writeAtomically(dir, downwardFiles(pod, s.items, s.defaultMode, d.allocatable), now);
      return { hostPath: dir, apiData: true };
    }
    case 'projected': {
      const payload: Payload = new Map();
      const tokens = await readTokens(pod.uid, v.name, d);
      const kept: Record<string, TokenState> = {};
      for (const [j, src] of s.sources.entries()) {
        const sf = `${field}.projected.sources[${j}]`;
        let part: Payload;
        if (src.kind === 'serviceAccountToken') {
          const t = await token(pod, src, tokens[src.path], `${sf}.serviceAccountToken`, d.cluster, now());
          kept[src.path] = t;
          part = new Map([[src.path, { data: Buffer.from(t.token), mode: s.defaultMode }]]);
        } else if (src.kind === 'downwardAPI') part = downwardFiles(pod, src.items, s.defaultMode, d.allocatable);
        else part = await objectFiles(pod, src.kind, src.name, src.items, s.defaultMode, src.optional, `${sf}.${src.kind}`, d.cluster);
        for (const [p, f] of part) {
          if (payload.has(p)) throw invalidArgument(`${sf}: the file ${p} is written by an earlier source too`, { field: sf });
          payload.set(p, f);
        }
      }
      const dir = volumeDir(d.memoryRoot, pod.uid, v.name);
      await writeAtomically(dir, payload, now);
      if (Object.keys(kept).length > 0) await writeTokens(pod.uid, v.name, d, kept);
      return { hostPath: dir, apiData: true };
    }
    case 'hostPath': {
      const checked = await checkHostPath(s.path, s.type, d, `${field}.hostPath.path`);
      return { hostPath: checked.path, identity: checked.identity, apiData: false };
    }
  }
}

/** The files of a configMap or secret: every key, or the items named. */
async function objectFiles(pod: PodManifest, kind: 'configMap' | 'secret', name: string, items: KeyToPath[] | undefined, defaultMode: number, optional: boolean, field: string, cluster: ClusterObjects | undefined): Promise<Payload> {
  const what = `${kind === 'configMap' ? 'configmap' : 'secret'} "${name}"`;
  if (!cluster) {
    if (optional) return new Map();
    throw failedPrecondition(`${what} cannot be read: this node has no control plane`, { field });
  }
  let data: Record<string, Buffer> | undefined;
  if (kind === 'configMap') {
    const cm = await cluster.configMap(pod.namespace, name);
    if (cm) data = { ...Object.fromEntries(Object.entries(cm.data).map(([k, v]) => [k, Buffer.from(v)])), ...cm.binaryData };
  } else data = (await cluster.secret(pod.namespace, name))?.data;
  if (!data) {
    if (optional) return new Map();
    throw notFound(`${what} not found`, { field: `${field}.name` });
  }
  const out: Payload = new Map();
  if (!items) {
    for (const [k, v] of Object.entries(data)) out.set(k, { data: v, mode: defaultMode });
    return out;
  }
  for (const [i, it] of items.entries()) {
    const v = data[it.key];
    if (v === undefined) {
      if (optional) continue;
      throw notFound(`${what} has no key ${JSON.stringify(it.key)}`, { field: `${field}.items[${i}].key` });
    }
    out.set(it.path, { data: v, mode: it.mode ?? defaultMode });
  }
  return out;
}

function downwardFiles(pod: PodManifest, items: DownwardAPIFile[], defaultMode: number, allocatable: NodeAllocatable | undefined): Payload {
  const out: Payload = new Map();
  for (const it of items) {
    let value: string;
    if (it.fieldRef) value = fieldValue(pod, it.fieldRef, undefined);
    else {
      const r = it.resourceFieldRef!;
      const c = pod.containers.find((x) => x.name === r.containerName);
      if (!c) throw notFound(`no container ${r.containerName} in the pod`, { field: `${it.path}.resourceFieldRef.containerName` });
      value = resourceValue(c, r.resource, r.divisor, allocatable ?? { cpu: '0', memory: '0', 'ephemeral-storage': '0' });
    }
    out.set(it.path, { data: Buffer.from(value), mode: it.mode ?? defaultMode });
  }
  return out;
}

const tokenFile = (d: VolumeRoots, podUid: string, volume: string): string => join(podDir(d.memoryRoot, podUid), 'tokens', `${volume}.json`);

async function readTokens(podUid: string, volume: string, d: VolumeRoots): Promise<Record<string, TokenState>> {
  try {
    return JSON.parse(await readFile(tokenFile(d, podUid, volume), 'utf8')) as Record<string, TokenState>;
  } catch {
    return {};
  }
}

async function writeTokens(podUid: string, volume: string, d: VolumeRoots, t: Record<string, TokenState>): Promise<void> {
  const file = tokenFile(d, podUid, volume);
  await mkdir(dirname(file), { recursive: true, mode: 0o700 });
  await writeFile(`${file}.tmp`, JSON.stringify(t), { mode: 0o600 });
  await rename(`${file}.tmp`, file);
}

/** The service-account token, asked for again at 80% of its life or after a day, as kubelet's token manager does. */
async function token(pod: PodManifest, src: { audience: string; expirationSeconds: number }, have: TokenState | undefined, field: string, cluster: ClusterObjects | undefined, nowMs: number): Promise<TokenState> {
  if (have && have.audience === src.audience && have.expirationSeconds === src.expirationSeconds) {
    const refreshAt = Math.min(have.issuedAt + 0.8 * (have.expiresAt - have.issuedAt), have.issuedAt + 24 * 3600 * 1000);
    if (nowMs < refreshAt) return have;
  }
  if (!cluster) throw failedPrecondition('a service account token needs a control plane (the TokenRequest API), and this node has none', { field });
  if (pod.serviceAccountName === '') throw invalidArgument('the pod names no service account (spec.serviceAccountName)', { field });
  try {
    const t = await cluster.serviceAccountToken(pod.namespace, pod.serviceAccountName, {
      audiences: src.audience === '' ? [] : [src.audience],
      expirationSeconds: src.expirationSeconds,
      podName: pod.name,
      podUid: pod.uid,
    });
    return { token: t.token, issuedAt: nowMs, expiresAt: t.expiresAt.getTime(), audience: src.audience, expirationSeconds: src.expirationSeconds };
  } catch (e: unknown) {
    // An expired token is worse than none; a still valid one is kept until the API server answers again.
    if (have && nowMs < have.expiresAt) return have;
    throw e;
  }
}

const isUnder = (p: string, dir: string): boolean => p === dir || p.startsWith(dir.endsWith(sep) ? dir : dir + sep);

/** A hostPath the node's user may hand to a pod: theirs, reachable as themselves, of the type asked, seen by the node namespace. */
async function checkHostPath(path: string, type: HostPathType, d: VolumeSetUp, field: string): Promise<{ path: string; identity: string }> {
  const rule = `a usernode pod may mount only paths its user (uid ${d.uid}) owns`;
  const reach = async (p: string): Promise<string | undefined> => {
    try {
      return await realpath(p);
    } catch (e: unknown) {
      const code = (e as NodeJS.ErrnoException).code;
      if (code === 'ENOENT') return undefined;
      throw permissionDenied(`${path} cannot be reached by uid ${d.uid}: ${(e as Error).message}; ${rule}`, { field });
    }
  };
  let resolved = await reach(path);
  if (resolved === undefined) {
    if (type === 'FileOrCreate') {
      // As kubelet: the file is made, its folder is not.
      const parent = await reach(dirname(path));
      if (parent === undefined) throw notFound(`${dirname(path)} does not exist (FileOrCreate makes the file, not its folder)`, { field });
      await ownedBy(parent, d.uid, rule, field);
      await (await open(path, 'a', 0o644)).close();
    } else if (type === '' || type === 'DirectoryOrCreate') {
      // The nearest existing folder must be the user's: what is made below it is then theirs too.
      let up = dirname(path);
      let found = await reach(up);
      while (found === undefined && up !== '/') found = await reach((up = dirname(up)));
      await ownedBy(found ?? '/', d.uid, rule, field);
      await mkdir(path, { recursive: true, mode: 0o755 });
    } else {
      throw notFound(`hostPath type check failed: ${path} does not exist (type ${type})`, { field });
    }
    resolved = (await reach(path))!;
  }
  const st = await ownedBy(resolved, d.uid, rule, field);
  const want: Record<string, [boolean, string]> = {
    Directory: [st.isDirectory(), 'a directory'],
    DirectoryOrCreate: [st.isDirectory(), 'a directory'],
    File: [st.isFile(), 'a file'],
    FileOrCreate: [st.isFile(), 'a file'],
    Socket: [st.isSocket(), 'a socket'],
    CharDevice: [st.isCharacterDevice(), 'a character device'],
    BlockDevice: [st.isBlockDevice(), 'a block device'],
  };
  const check = want[type];
  if (check && !check[0]) throw invalidArgument(`hostPath type check failed: ${path} is not ${check[1]}`, { field });
  const shared = [`/run/user/${d.uid}`, d.root, d.memoryRoot];
  const copied = copiedUpTrees.find((t) => isUnder(resolved, t));
  if (copied && !shared.some((s) => isUnder(resolved, s))) {
    throw failedPrecondition(`${path} is under ${copied}, of which the node namespace has a copy of its own (rootlesskit --copy-up): the runtime would not see it as it is`, { field });
  }
  return { path: resolved, identity: identityOf(st) };
}

async function ownedBy(p: string, uid: number, rule: string, field: string): Promise<BigIntStats> {
  const st = await stat(p, { bigint: true });
  if (st.uid !== BigInt(uid)) throw permissionDenied(`${p} is owned by uid ${st.uid}: ${rule}`, { field });
  return st;
}

/**
 * `sub` inside the volume, made if missing, as kubelet does (doSafeMakeDir):
 * walked from the volume's folder one component at a time, following a
 * symlink only while it stays in the volume — a container could plant one in
 * an emptyDir to reach the user's own files. The runtime walks it again
 * beneath the same folder when it binds it (the container may swap a
 * component meanwhile).
 */
async function subPathIn(volume: MountRoot, sub: string, field: string): Promise<string> {
  const fh = await openBeneath(volume.root, sub, { field, makeDirs: 0o755, ...(volume.identity ? { rootIdentity: volume.identity } : {}) }).catch((e: unknown) => {
    throw e instanceof DomainError && e.code === 'PermissionDenied' ? new DomainError(e.code, `subPath ${sub} leads out of the volume: ${e.message}`, { field, cause: e }) : e;
  });
  try {
    return await pathOf(fh);
  } finally {
    await fh.close();
  }
}

/** The pods that have volume folders on this node, by uid (to find what is left of removed pods). */
export async function podsWithVolumes(d: VolumeRoots): Promise<string[]> {
  const list = async (dir: string): Promise<string[]> => readdir(dir).catch(() => [] as string[]);
  return [...new Set([...(await list(d.root)), ...(await list(d.memoryRoot))])];
}

export interface VolumeTearDown extends VolumeRoots {
  /**
   * Runs a command as root of the node namespace (nsenter): files a
   * container made as one of the user's subordinate ids can be removed only there.
   */
  asNodeRoot?: (argv: string[]) => string[];
}

/** Removes the pod's volume folders (never a hostPath's content). Idempotent. */
export async function tearDownPodVolumes(podUid: string, d: VolumeTearDown): Promise<void> {
  if (podUid === '' || podUid.includes('/') || podUid.startsWith('.')) throw invalidArgument(`not a pod uid: ${JSON.stringify(podUid)}`, { field: 'podUid' });
  for (const dir of [podDir(d.root, podUid), podDir(d.memoryRoot, podUid)]) {
    try {
      await rm(dir, { recursive: true, force: true });
    } catch (e: unknown) {
      const code = (e as NodeJS.ErrnoException).code;
      if ((code !== 'EACCES' && code !== 'EPERM') || !d.asNodeRoot) throw e;
      const [file, ...args] = d.asNodeRoot(['rm', '-rf', '--', dir]);
      await promisify(execFile)(file!, args);
    }
  }
}
