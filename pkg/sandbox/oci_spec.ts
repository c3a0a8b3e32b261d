import { posix } from 'node:path';

import { failedPrecondition, invalidArgument, unimplemented } from '../errdefs/errors.js';
import type { ImageConfig } from '../image/media_types.js';
import { nodeIdRange, rangesOf, resolveUser } from './oci_spec_user.js';
import type {
  CriContainerConfig,
  CriLinuxContainerResources,
  CriLinuxContainerSecurityContext,
  CriMount,
  IdMapping,
  OciCapabilities,
  OciIdMapping,
  OciLinux,
  OciMount,
  OciNamespace,
  OciResources,
  OciRlimit,
  OciSpec,
} from './oci_spec_types.js';

export type * from './oci_spec_types.js';
export { parseGroup, parsePasswd } from './oci_spec_user.js';

// The OCI runtime spec (config.json) of a CRI container, built as containerd's
// CRI plugin builds it (internal/cri/server/container_create.go buildLinuxSpec,
// internal/cri/opts, pkg/oci), for runc 1.1 running as uid 0 of the node user
// namespace (ids 0..65535 mapped, no privilege on the host). A pure function:
// everything it needs from disk (passwd/group text, seccomp profiles) comes in.
//
// What a user namespace changes, and so what differs from containerd:
// - proc, sysfs and mqueue can only be mounted by the owner of the pid, net
//   and ipc namespace. The node's pid and ipc namespaces are the host's (only
//   user, mount and net are unshared by rootlesskit), so with hostPID /proc
//   is a bind mount of the node's, and with hostIPC there is no /dev/mqueue
//   (runc fails to bind a node /dev/mqueue the host may not have). The node netns
//   and the pod netns both belong to the node user namespace, so sysfs mounts
//   in either, except from a nested pod user namespace on the node's network
//   (hostNetwork + userns), where /sys is a read-only bind as containerd does.
// - No cgroup limit, no cgroupsPath, no cgroup namespace and no
//   /sys/fs/cgroup mount unless a cgroup v2 subtree is delegated.
// - No host devices for privileged containers, no device cgroup rules, no
//   AppArmor, no SELinux labels, no hugepage limits; oom_score_adj cannot be
//   lowered below 0 (CAP_SYS_RESOURCE on the host). Each one that a request
//   asked for is returned as a note, for Status and the log.

export interface PodUserNamespace {
  uidMappings: IdMapping[];
  gidMappings: IdMapping[];
  /** The pod's user namespace to join; its mappings are still required (runc 1.1 reads them). */
  path?: string;
}

/** What the container takes from its pod sandbox. */
export interface SandboxForSpec {
  hostname: string;
  /** The pod's network namespace (bind mount); required unless hostNetwork. */
  netnsPath?: string;
  /** The pod's IPC namespace; absent: the node's (hostIPC). */
  ipcPath?: string;
  /** The pod's UTS namespace; absent: the node's. */
  utsPath?: string;
  pidMode: 'POD' | 'CONTAINER' | 'NODE';
  /** The pod's process namespace to join (pidMode POD: its PID 1 is the pod's init); absent: a namespace of the container's own. */
  pidPath?: string;
  hostNetwork: boolean;
  /**
   * A nested user namespace for the pod (hostUsers: false). The pod's net, IPC
   * and UTS namespaces must belong to it (created inside it), or the container
   * can neither join them nor mount sysfs and mqueue there.
   */
  userns?: PodUserNamespace;
  resolvConfPath: string;
  hostsPath: string;
  hostnamePath: string;
  /** The pod's /dev/shm (a tmpfs shared by its containers); absent: a tmpfs of the container's own. */
  shmPath?: string;
  sysctls: Record<string, string>;
  cgroupParent?: string;
}

export interface SpecInput {
  containerId: string;
  sandboxId: string;
  config: CriContainerConfig;
  sandbox: SandboxForSpec;
  image: ImageConfig;
  /** Absolute path of the container's root filesystem. */
  rootfsPath: string;
  /** /etc/passwd and /etc/group text of the image rootfs (may be undefined), for user names and supplemental groups */
  passwd?: string;
  group?: string;
  /** canEnforceLimits false: no linux.resources, no cgroupsPath, no cgroup namespace or mount. */
  cgroups: {
    canEnforceLimits: boolean;
    /** The delegated cgroup v2 folder under which container cgroups are created. */
    path?: string;
    /** The node's per-pod pids limit (kubelet's podPidsLimit), applied to each container when limits are enforced. */
    pidsLimit?: number;
  };
  /** runtimeDefault: the RuntimeDefault profile for a container of these bounding capabilities. */
  seccomp: { runtimeDefault: ((capabilities: readonly string[]) => object) | undefined; loadLocalhost: (path: string) => object };
  /** host path of the termination log file to bind to the container path */
  terminationMessagePath?: string;
  /** Rlimits the caller has checked the agent may set (hard ≤ its own hard limit); none: runc's inherited ones. */
  rlimits?: OciRlimit[];
}

export interface OciSpecResult {
  spec: OciSpec;
  /** What was asked for and cannot be had rootless, one sentence each. */
  notes: string[];
}

export function buildOciSpec(input: SpecInput): OciSpec {
  return buildOciSpecWithNotes(input).spec;
}

/** The containerd default capability set (containerd 1.x, which Kubernetes workloads expect). */
export const defaultCapabilities: readonly string[] = [
  'CAP_CHOWN',
  'CAP_DAC_OVERRIDE',
  'CAP_FSETID',
  'CAP_FOWNER',
  'CAP_MKNOD',
  'CAP_NET_RAW',
  'CAP_SETGID',
  'CAP_SETUID',
  'CAP_SETFCAP',
  'CAP_SETPCAP',
  'CAP_NET_BIND_SERVICE',
  'CAP_SYS_CHROOT',
  'CAP_KILL',
  'CAP_AUDIT_WRITE',
];

/** Every capability Linux defines up to 6.x (cap_last_cap 40), in number order; what runc 1.1 knows. */
export const allCapabilities: readonly string[] = [
  'CAP_CHOWN',
  'CAP_DAC_OVERRIDE',
  'CAP_DAC_READ_SEARCH',
  'CAP_FOWNER',
  'CAP_FSETID',
  'CAP_KILL',
  'CAP_SETGID',
  'CAP_SETUID',
  'CAP_SETPCAP',
  'CAP_LINUX_IMMUTABLE',
  'CAP_NET_BIND_SERVICE',
  'CAP_NET_BROADCAST',
  'CAP_NET_ADMIN',
  'CAP_NET_RAW',
  'CAP_IPC_LOCK',
  'CAP_IPC_OWNER',
  'CAP_SYS_MODULE',
  'CAP_SYS_RAWIO',
  'CAP_SYS_CHROOT',
  'CAP_SYS_PTRACE',
  'CAP_SYS_PACCT',
  'CAP_SYS_ADMIN',
  'CAP_SYS_BOOT',
  'CAP_SYS_NICE',
  'CAP_SYS_RESOURCE',
  'CAP_SYS_TIME',
  'CAP_SYS_TTY_CONFIG',
  'CAP_MKNOD',
  'CAP_LEASE',
  'CAP_AUDIT_WRITE',
  'CAP_AUDIT_CONTROL',
  'CAP_SETFCAP',
  'CAP_MAC_OVERRIDE',
  'CAP_MAC_ADMIN',
  'CAP_SYSLOG',
  'CAP_WAKE_ALARM',
  'CAP_BLOCK_SUSPEND',
  'CAP_AUDIT_READ',
  'CAP_PERFMON',
  'CAP_BPF',
  'CAP_CHECKPOINT_RESTORE',
];

/** containerd's pkg/oci defaults, used when the CRI request lists none. */
export const defaultMaskedPaths: readonly string[] = [
  '/proc/acpi',
  '/proc/asound',
  '/proc/kcore',
  '/proc/keys',
  '/proc/latency_stats',
  '/proc/timer_list',
  '/proc/timer_stats',
  '/proc/sched_debug',
  '/sys/firmware',
  '/sys/devices/virtual/powercap',
  '/proc/scsi',
];

export const defaultReadonlyPaths: readonly string[] = ['/proc/bus', '/proc/fs', '/proc/irq', '/proc/sys', '/proc/sysrq-trigger'];

export const defaultPathEnv = 'PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin';

/** Where kubelet says the termination message goes (an annotation on every container it creates). */
export const terminationMessagePathAnnotation = 'io.kubernetes.container.terminationMessagePath';
export const defaultTerminationMessagePath = '/dev/termination-log';

export const criAnnotations = {
  containerType: 'io.kubernetes.cri.container-type',
  sandboxId: 'io.kubernetes.cri.sandbox-id',
  containerName: 'io.kubernetes.cri.container-name',
  imageName: 'io.kubernetes.cri.image-name',
} as const;

const scField = 'config.linux.securityContext';

export function buildOciSpecWithNotes(input: SpecInput): OciSpecResult {
  const { config, sandbox } = input;
  const notes: string[] = [];
  const ctx = config.linux?.securityContext ?? undefined;
  const privileged = ctx?.privileged === true;
  const name = config.metadata?.name;
  if (!name) throw invalidArgument('container metadata.name is required', { field: 'config.metadata.name' });
  if (!posix.isAbsolute(input.rootfsPath)) throw invalidArgument(`rootfs path "${input.rootfsPath}" is not absolute`, { field: 'rootfsPath' });
  if (!sandbox.hostNetwork && !sandbox.netnsPath) throw failedPrecondition('the pod sandbox has no network namespace and is not hostNetwork', { field: 'sandbox.netnsPath' });

  const userns = sandbox.userns;
  const user = resolveUser({
    securityContext: ctx,
    imageUser: input.image.config?.User,
    passwd: input.passwd,
    group: input.group,
    uidRanges: userns ? rangesOf(userns.uidMappings) : [nodeIdRange],
    gidRanges: userns ? rangesOf(userns.gidMappings) : [nodeIdRange],
  });

  const { mounts, rootfsPropagation } = buildMounts(input, privileged, notes);
  const linux: OciLinux = {
    namespaces: namespaces(input, privileged),
    maskedPaths: privileged ? [] : nonEmpty(ctx?.maskedPaths) ?? [...defaultMaskedPaths],
    readonlyPaths: privileged ? [] : nonEmpty(ctx?.readonlyPaths) ?? [...defaultReadonlyPaths],
  };
  if (userns) {
    linux.uidMappings = userns.uidMappings.map(ociMapping);
    linux.gidMappings = userns.gidMappings.map(ociMapping);
  }
  if (rootfsPropagation) linux.rootfsPropagation = rootfsPropagation;
  const sysctl = sysctls(sandbox);
  if (sysctl) linux.sysctl = sysctl;
  const resources = config.linux?.resources ?? undefined;
  if (input.cgroups.canEnforceLimits) {
    const r = ociResources(resources, input.cgroups.pidsLimit, notes);
    if (r) linux.resources = r;
    linux.cgroupsPath = posix.join('/', input.cgroups.path ?? '', sandbox.cgroupParent ?? '', input.containerId);
  } else if (resources && asksForLimits(resources)) {
    notes.push('CPU and memory limits are not enforced: no cgroup v2 subtree is delegated to the user');
  }
  const caps = capabilities(ctx, privileged);
  const seccomp = seccompOf(ctx, privileged, caps.bounding, input.seccomp, notes);
  if (seccomp) linux.seccomp = seccomp;

  if (ctx?.apparmor?.profileType === 'Localhost' || ctx?.apparmorProfile?.startsWith('localhost/')) {
    notes.push('the AppArmor profile is not applied: AppArmor profiles cannot be loaded without root');
  }
  if ((ctx?.capabilities?.addAmbientCapabilities ?? []).length > 0) notes.push('ambient capabilities are not set (as containerd)');
  if (privileged) notes.push("a privileged container gets every capability of the pod's user namespace, not the host's devices");
  for (const volume of Object.keys(input.image.config?.Volumes ?? {})) {
    if (!mounts.some((m) => m.destination === posix.normalize(posix.join('/', volume)))) {
      notes.push(`image volume ${volume} is not a separate volume: it stays part of the container's root filesystem`);
    }
  }

  const process: OciSpec['process'] = {
    terminal: config.tty === true,
    user: { uid: user.uid, gid: user.gid, additionalGids: user.additionalGids },
    args: processArgs(config, input.image),
    env: environment(config, input.image, sandbox.hostname),
    cwd: workingDir(config, input.image),
    capabilities: caps,
    noNewPrivileges: ctx?.noNewPrivs === true,
  };
  const rlimits = checkedRlimits(input.rlimits);
  if (rlimits) process.rlimits = rlimits;
  if (resources) process.oomScoreAdj = oomScoreAdj(resources, notes);

  const spec: OciSpec = {
    ociVersion: '1.0.2',
    process,
    root: { path: input.rootfsPath, readonly: ctx?.readonlyRootfs === true },
    mounts,
    linux,
    annotations: {
      ...(config.annotations ?? {}),
      [criAnnotations.containerType]: 'container',
      [criAnnotations.sandboxId]: input.sandboxId,
      [criAnnotations.containerName]: name,
      [criAnnotations.imageName]: config.image?.userSpecifiedImage || config.image?.image || '',
    },
  };
  return { spec, notes };
}

// ---- process ----

/**
 * Kubernetes semantics: command replaces ENTRYPOINT and drops CMD; args alone
 * replace CMD; neither runs ENTRYPOINT + CMD. An ENTRYPOINT of [""] is none.
 */
function processArgs(config: CriContainerConfig, image: ImageConfig): string[] {
  const command = config.command ?? [];
  const args = config.args ?? [];
  let out: string[];
  if (command.length > 0) out = [...command, ...args];
  else {
    const ep = image.config?.Entrypoint ?? [];
    const entrypoint = ep.length === 1 && ep[0] === '' ? [] : ep;
    out = [...entrypoint, ...(args.length > 0 ? args : (image.config?.Cmd ?? []))];
  }
  if (out.length === 0) throw invalidArgument('no command: neither the container config nor the image gives one', { field: 'config.command' });
  return out;
}

function environment(config: CriContainerConfig, image: ImageConfig, hostname: string): string[] {
  // As containerd: PATH default, then HOSTNAME, then the image's Env, then
  // the CRI's; a later entry replaces an earlier one of the same name in place.
  const env: string[] = [];
  const index = new Map<string, number>();
  const set = (kv: string): void => {
    const eq = kv.indexOf('=');
    if (eq <= 0) return;
    const key = kv.slice(0, eq);
    const at = index.get(key);
    if (at === undefined) {
      index.set(key, env.length);
      env.push(kv);
    } else env[at] = kv;
  };
  set(defaultPathEnv);
  if (hostname) set(`HOSTNAME=${hostname}`);
  for (const kv of image.config?.Env ?? []) set(kv);
  const decoder = new TextDecoder();
  (config.envs ?? []).forEach((e, i) => {
    if (!e.key || e.key.includes('=')) throw invalidArgument(`environment variable name "${e.key}" is empty or contains "="`, { field: `config.envs[${i}].key` });
    const value = typeof e.value === 'string' ? e.value : decoder.decode(e.value);
    set(`${e.key}=${value}`);
  });
  return env;
}

function workingDir(config: CriContainerConfig, image: ImageConfig): string {
  if (config.workingDir) {
    if (!posix.isAbsolute(config.workingDir)) throw invalidArgument(`working directory "${config.workingDir}" is not absolute`, { field: 'config.workingDir' });
    return config.workingDir;
  }
  const wd = image.config?.WorkingDir;
  // Docker builds store WORKDIR absolute; a relative one is taken from "/".
  return wd ? posix.join('/', wd) : '/';
}

function capabilities(ctx: CriLinuxContainerSecurityContext | undefined, privileged: boolean): OciCapabilities {
  let caps: string[];
  if (privileged) caps = [...allCapabilities];
  else {
    caps = [...defaultCapabilities];
    const add = ctx?.capabilities?.addCapabilities ?? [];
    const drop = ctx?.capabilities?.dropCapabilities ?? [];
    // containerd's order: ALL first, so "add ALL, drop X" and "drop ALL, add X" both work.
    if (add.some(isAll)) caps = [...allCapabilities];
    if (drop.some(isAll)) caps = [];
    add.forEach((c, i) => {
      if (isAll(c)) return;
      const cap = capName(c, `${scField}.capabilities.addCapabilities[${i}]`);
      if (!caps.includes(cap)) caps.push(cap);
    });
    drop.forEach((c, i) => {
      if (isAll(c)) return;
      const cap = capName(c, `${scField}.capabilities.dropCapabilities[${i}]`);
      caps = caps.filter((x) => x !== cap);
    });
  }
  return { bounding: caps, effective: [...caps], permitted: [...caps], inheritable: [], ambient: [] };
}

const isAll = (c: string): boolean => c.trim().toUpperCase() === 'ALL';

function capName(c: string, field: string): string {
  const upper = c.trim().toUpperCase();
  const cap = upper.startsWith('CAP_') ? upper : `CAP_${upper}`;
  if (!allCapabilities.includes(cap)) throw invalidArgument(`unknown capability "${c}"`, { field });
  return cap;
}

function oomScoreAdj(resources: CriLinuxContainerResources, notes: string[]): number {
  const asked = Number(resources.oomScoreAdj ?? 0);
  if (!Number.isInteger(asked)) throw invalidArgument(`oom_score_adj "${String(resources.oomScoreAdj)}" is not an integer`, { field: 'config.linux.resources.oomScoreAdj' });
  // Lowering oom_score_adj below the agent's own (0) needs CAP_SYS_RESOURCE on the host.
  const adj = Math.min(1000, Math.max(0, asked));
  if (asked < 0) notes.push(`oom_score_adj ${asked} raised to 0: a lower score needs privilege on the host`);
  return adj;
}

function checkedRlimits(rlimits: OciRlimit[] | undefined): OciRlimit[] | undefined {
  if (!rlimits || rlimits.length === 0) return undefined;
  rlimits.forEach((r, i) => {
    if (!(Number.isInteger(r.soft) && Number.isInteger(r.hard) && r.soft >= 0 && r.soft <= r.hard)) {
      throw invalidArgument(`${r.type}: soft limit ${r.soft} must be between 0 and the hard limit ${r.hard}`, { field: `rlimits[${i}]` });
    }
  });
  return rlimits.map((r) => ({ ...r }));
}

// ---- mounts ----

interface MountPlan {
  mounts: OciMount[];
  rootfsPropagation: OciLinux['rootfsPropagation'];
}

const clean = (p: string): string => {
  const n = posix.normalize(p);
  return n.length > 1 && n.endsWith('/') ? n.slice(0, -1) : n;
};

function buildMounts(input: SpecInput, privileged: boolean, notes: string[]): MountPlan {
  const { config, sandbox } = input;
  const ctx = config.linux?.securityContext ?? undefined;
  let rootfsPropagation: OciLinux['rootfsPropagation'];

  const cri = (config.mounts ?? []).map((m, i) => {
    const mount = criBind(m, `config.mounts[${i}]`);
    if (m.propagation === 'PROPAGATION_BIDIRECTIONAL') rootfsPropagation = 'rshared';
    else if (m.propagation === 'PROPAGATION_HOST_TO_CONTAINER' && rootfsPropagation !== 'rshared') rootfsPropagation = 'rslave';
    return mount;
  });
  const devices = (config.devices ?? []).map((d, i) => {
    const field = `config.devices[${i}]`;
    if (!posix.isAbsolute(d.containerPath) || !posix.isAbsolute(d.hostPath)) throw invalidArgument(`device paths must be absolute (host "${d.hostPath}", container "${d.containerPath}")`, { field });
    // In a user namespace runc cannot mknod: a device is a bind of the node's
    // node, and no device cgroup can hold it to its permissions.
    notes.push(`device ${d.containerPath} is a bind mount of ${d.hostPath}; its permissions "${d.permissions}" are not enforced without a device cgroup`);
    return bind(clean(d.containerPath), d.hostPath, ['rbind', 'rprivate', 'rw']);
  });
  const supplied = new Set([...cri, ...devices].map((m) => m.destination));

  // Files the sandbox prepared, unless the request mounts its own there (kubelet mounts its /etc/hosts).
  const extra: OciMount[] = [];
  const rw = ctx?.readonlyRootfs === true ? 'ro' : 'rw';
  const sandboxFile = (dest: string, source: string, mode: 'ro' | 'rw'): void => {
    if (source && !supplied.has(dest)) extra.push(bind(dest, source, ['rbind', 'rprivate', mode]));
  };
  sandboxFile('/etc/hostname', sandbox.hostnamePath, rw);
  sandboxFile('/etc/hosts', sandbox.hostsPath, rw);
  sandboxFile('/etc/resolv.conf', sandbox.resolvConfPath, rw);
  if (sandbox.shmPath) sandboxFile('/dev/shm', sandbox.shmPath, 'rw');
  if (input.terminationMessagePath) {
    const dest = config.annotations?.[terminationMessagePathAnnotation] || defaultTerminationMessagePath;
    if (!posix.isAbsolute(dest)) throw invalidArgument(`termination message path "${dest}" is not absolute`, { field: `config.annotations["${terminationMessagePathAnnotation}"]` });
    sandboxFile(clean(dest), input.terminationMessagePath, 'rw');
  }

  const userns = sandbox.userns !== undefined;
  const defaults: OciMount[] = [];
  defaults.push(
    sandbox.pidMode === 'NODE'
      ? bind('/proc', '/proc', ['rbind', 'nosuid', 'noexec', 'nodev'])
      : { destination: '/proc', type: 'proc', source: 'proc', options: ['nosuid', 'noexec', 'nodev'] },
  );
  defaults.push({ destination: '/dev', type: 'tmpfs', source: 'tmpfs', options: ['nosuid', 'strictatime', 'mode=755', 'size=65536k'] });
  defaults.push({ destination: '/dev/pts', type: 'devpts', source: 'devpts', options: ['nosuid', 'noexec', 'newinstance', 'ptmxmode=0666', 'mode=0620', 'gid=5'] });
  if (!sandbox.shmPath) defaults.push({ destination: '/dev/shm', type: 'tmpfs', source: 'shm', options: ['nosuid', 'noexec', 'nodev', 'mode=1777', 'size=65536k'] });
  // mqueue mounts only in an IPC namespace of our own; the node's is the host's,
  // and a bind of the node's /dev/mqueue fails where the host has none: hostIPC goes without.
  if (sandbox.ipcPath) defaults.push({ destination: '/dev/mqueue', type: 'mqueue', source: 'mqueue', options: ['nosuid', 'noexec', 'nodev'] });
  if (sandbox.hostNetwork && userns) {
    // sysfs belongs to the netns owner: from a nested user namespace the node's netns is not ours.
    defaults.push(bind('/sys', '/sys', ['rbind', 'rro', 'nosuid', 'nodev', 'noexec']));
  } else {
    defaults.push({ destination: '/sys', type: 'sysfs', source: 'sysfs', options: ['nosuid', 'noexec', 'nodev', privileged ? 'rw' : 'ro'] });
  }
  if (input.cgroups.canEnforceLimits) {
    defaults.push({ destination: '/sys/fs/cgroup', type: 'cgroup', source: 'cgroup', options: ['nosuid', 'noexec', 'nodev', 'relatime', privileged ? 'rw' : 'ro'] });
  }

  const own = [...cri, ...devices, ...extra];
  const ownSet = new Set(own.map((m) => m.destination));
  const keptDefaults = defaults.filter((m) => !ownSet.has(m.destination) && !(ownSet.has('/dev') && m.destination.startsWith('/dev/')));
  // Parents before children: a stable sort on depth, as containerd's orderedMounts.
  const depth = (m: OciMount): number => (m.destination === '/' ? 0 : m.destination.split('/').length - 1);
  const sorted = own
    .map((m, i) => ({ m, i }))
    .sort((a, b) => depth(a.m) - depth(b.m) || a.i - b.i)
    .map((x) => x.m);
  return { mounts: [...keptDefaults, ...sorted], rootfsPropagation };
}

function criBind(m: CriMount, field: string): OciMount {
  if (m.image?.image) throw unimplemented('image volume mounts are not supported', { field });
  if (!m.containerPath || !posix.isAbsolute(m.containerPath)) throw invalidArgument(`container_path "${m.containerPath}" is not an absolute path`, { field });
  if (!m.hostPath) throw invalidArgument('host_path is empty', { field });
  if (!posix.isAbsolute(m.hostPath)) throw invalidArgument(`host_path "${m.hostPath}" is not an absolute path`, { field });
  if ((m.uidMappings ?? []).length > 0 || (m.gidMappings ?? []).length > 0) throw unimplemented('idmapped mounts are not supported by runc 1.1', { field });
  const options = ['rbind'];
  const propagation = m.propagation ?? 'PROPAGATION_PRIVATE';
  switch (propagation) {
    case 'PROPAGATION_PRIVATE':
      options.push('rprivate');
      break;
    case 'PROPAGATION_HOST_TO_CONTAINER':
      options.push('rslave');
      break;
    case 'PROPAGATION_BIDIRECTIONAL':
      options.push('rshared');
      break;
    default:
      throw invalidArgument(`unknown propagation "${String(propagation)}"`, { field });
  }
  if (m.recursiveReadOnly) {
    if (!m.readonly) throw invalidArgument('recursive_read_only needs readonly', { field });
    if (propagation !== 'PROPAGATION_PRIVATE') throw invalidArgument('recursive_read_only needs private propagation', { field });
    options.push('rro');
  } else options.push(m.readonly ? 'ro' : 'rw');
  return bind(clean(m.containerPath), m.hostPath, options);
}

function bind(destination: string, source: string, options: string[]): OciMount {
  return { destination, type: 'bind', source, options };
}

// ---- namespaces, sysctls, resources, seccomp ----

function namespaces(input: SpecInput, privileged: boolean): OciNamespace[] {
  const { sandbox } = input;
  const out: OciNamespace[] = [];
  if (sandbox.pidMode === 'POD' && sandbox.pidPath) out.push({ type: 'pid', path: sandbox.pidPath });
  else if (sandbox.pidMode !== 'NODE') out.push({ type: 'pid' });
  if (sandbox.ipcPath) out.push({ type: 'ipc', path: sandbox.ipcPath });
  if (sandbox.utsPath) out.push({ type: 'uts', path: sandbox.utsPath });
  out.push({ type: 'mount' });
  if (!sandbox.hostNetwork && sandbox.netnsPath) out.push({ type: 'network', path: sandbox.netnsPath });
  if (sandbox.userns) out.push(sandbox.userns.path ? { type: 'user', path: sandbox.userns.path } : { type: 'user' });
  // cgroupns hides the host's hierarchy; containerd leaves it out for privileged containers.
  if (input.cgroups.canEnforceLimits && !privileged) out.push({ type: 'cgroup' });
  return out;
}

function ociMapping(m: IdMapping): OciIdMapping {
  return { containerID: m.containerId, hostID: m.hostId, size: m.length };
}

const ipcSysctls = new Set(['kernel.msgmax', 'kernel.msgmnb', 'kernel.msgmni', 'kernel.sem', 'kernel.shmall', 'kernel.shmmax', 'kernel.shmmni', 'kernel.shm_rmid_forced']);

/** The pod's sysctls, checked as runc checks them so a refusal names the key instead of failing in runc. */
function sysctls(sandbox: SandboxForSpec): Record<string, string> | undefined {
  const keys = Object.keys(sandbox.sysctls);
  if (keys.length === 0) return undefined;
  for (const key of keys) {
    const k = key.replaceAll('/', '.');
    const field = `sandbox.sysctls["${key}"]`;
    if (k.startsWith('net.')) {
      if (sandbox.hostNetwork) throw invalidArgument(`sysctl ${key} cannot be set on the node's network namespace (hostNetwork)`, { field });
    } else if (ipcSysctls.has(k) || k.startsWith('fs.mqueue.')) {
      if (!sandbox.ipcPath) throw invalidArgument(`sysctl ${key} cannot be set on the node's IPC namespace (hostIPC)`, { field });
    } else if (k === 'kernel.hostname' || k === 'kernel.domainname') {
      if (!sandbox.utsPath) throw invalidArgument(`sysctl ${key} cannot be set on the node's UTS namespace`, { field });
    } else throw invalidArgument(`sysctl ${key} is not namespaced: only the host can set it`, { field });
  }
  return { ...sandbox.sysctls };
}

function asksForLimits(r: CriLinuxContainerResources): boolean {
  const n = (v: unknown): boolean => v !== undefined && v !== null && v !== '' && Number(v) !== 0;
  return n(r.cpuQuota) || n(r.cpuShares) || n(r.memoryLimitInBytes) || n(r.memorySwapLimitInBytes) || !!r.cpusetCpus || !!r.cpusetMems || (r.hugepageLimits ?? []).length > 0;
}

/** CRI resources as OCI runtime-spec LinuxResources (config.json, and what `runc update` reads). */
export function ociResources(r: CriLinuxContainerResources | undefined, pidsLimit: number | undefined, notes: string[]): OciResources | undefined {
  const out: OciResources = {};
  const num = (v: string | number | undefined, field: string): number => {
    const x = Number(v ?? 0);
    if (!Number.isFinite(x)) throw invalidArgument(`"${String(v)}" is not a number`, { field: `config.linux.resources.${field}` });
    return x;
  };
  if (r) {
    const cpu: NonNullable<OciResources['cpu']> = {};
    const shares = num(r.cpuShares, 'cpuShares');
    const quota = num(r.cpuQuota, 'cpuQuota');
    const period = num(r.cpuPeriod, 'cpuPeriod');
    if (shares !== 0) cpu.shares = shares;
    if (quota !== 0) cpu.quota = quota;
    if (period !== 0) cpu.period = period;
    if (r.cpusetCpus) cpu.cpus = r.cpusetCpus;
    if (r.cpusetMems) cpu.mems = r.cpusetMems;
    if (Object.keys(cpu).length > 0) out.cpu = cpu;
    const memory: NonNullable<OciResources['memory']> = {};
    const limit = num(r.memoryLimitInBytes, 'memoryLimitInBytes');
    const swap = num(r.memorySwapLimitInBytes, 'memorySwapLimitInBytes');
    if (limit !== 0) memory.limit = limit;
    // Only an explicit swap limit: runc 1.1 fails when memory.swap.max is absent (swap accounting off).
    if (swap !== 0) memory.swap = swap;
    if (Object.keys(memory).length > 0) out.memory = memory;
    if (r.unified && Object.keys(r.unified).length > 0) out.unified = { ...r.unified };
    if ((r.hugepageLimits ?? []).length > 0) notes.push('hugepage limits are not enforced: the delegated cgroup has no hugetlb controller rootless');
  }
  if (pidsLimit !== undefined && pidsLimit > 0) out.pids = { limit: pidsLimit };
  return Object.keys(out).length > 0 ? out : undefined;
}

type SeccompChoice = { kind: 'RuntimeDefault' } | { kind: 'Unconfined' } | { kind: 'Localhost'; ref: string };

function seccompChoice(ctx: CriLinuxContainerSecurityContext | undefined): SeccompChoice {
  const profile = ctx?.seccomp;
  if (profile) {
    switch (profile.profileType) {
      case 'RuntimeDefault':
        return { kind: 'RuntimeDefault' };
      case 'Unconfined':
        return { kind: 'Unconfined' };
      case 'Localhost':
        if (!profile.localhostRef) throw invalidArgument('a Localhost seccomp profile needs localhost_ref', { field: `${scField}.seccomp.localhostRef` });
        return { kind: 'Localhost', ref: profile.localhostRef };
      default:
        throw invalidArgument(`unknown seccomp profile type "${String(profile.profileType)}"`, { field: `${scField}.seccomp.profileType` });
    }
  }
  // The deprecated string form; unset means unconfined, as containerd's default.
  const path = ctx?.seccompProfilePath ?? '';
  if (path === '' || path === 'unconfined') return { kind: 'Unconfined' };
  if (path === 'runtime/default' || path === 'docker/default') return { kind: 'RuntimeDefault' };
  if (path.startsWith('localhost/') && path.length > 'localhost/'.length) return { kind: 'Localhost', ref: path.slice('localhost/'.length) };
  throw invalidArgument(`unknown seccomp profile "${path}"`, { field: `${scField}.seccompProfilePath` });
}

function seccompOf(
  ctx: CriLinuxContainerSecurityContext | undefined,
  privileged: boolean,
  capabilities: readonly string[],
  seccomp: SpecInput['seccomp'],
  notes: string[],
): object | undefined {
  const choice = seccompChoice(ctx);
  // Privileged containers run unconfined whatever the profile says (containerd).
  if (privileged) return undefined;
  switch (choice.kind) {
    case 'Unconfined':
      return undefined;
    case 'RuntimeDefault':
      if (seccomp.runtimeDefault === undefined) notes.push('the RuntimeDefault seccomp profile is not available: the container runs unconfined');
      return seccomp.runtimeDefault?.(capabilities);
    case 'Localhost':
      return seccomp.loadLocalhost(choice.ref);
  }
}

function nonEmpty(list: string[] | undefined): string[] | undefined {
  return list && list.length > 0 ? [...list] : undefined;
}

