import { invalidArgument } from '../errdefs/errors.js';

// Pod and container securityContext, as kubelet turns them into the CRI's
// Linux security contexts (kuberuntime's determineEffectiveSecurityContext):
// the container's settings win over the pod's for the user, group,
// runAsNonRoot, seccomp and AppArmor; the pod's supplemental groups and
// fsGroup are every container's; allowPrivilegeEscalation: false is
// no_new_privs. What a rootless node cannot give is refused by field, never
// dropped: a privileged container, an unmasked /proc, a Localhost AppArmor
// profile (AppArmor profiles cannot be loaded without root).

type Obj = Record<string, unknown>;
const isObj = (v: unknown): v is Obj => typeof v === 'object' && v !== null && !Array.isArray(v);

export interface SeccompSpec {
  type: 'RuntimeDefault' | 'Unconfined' | 'Localhost';
  localhostProfile?: string;
}

/** The settings a pod and a container share (the container's win). */
interface CommonSecurity {
  runAsUser?: number;
  runAsGroup?: number;
  runAsNonRoot?: boolean;
  seccomp?: SeccompSpec;
  appArmor?: 'RuntimeDefault' | 'Unconfined';
}

export interface PodSecurity extends CommonSecurity {
  supplementalGroups: number[];
  supplementalGroupsPolicy?: 'Merge' | 'Strict';
  fsGroup?: number;
  sysctls: Record<string, string>;
}

export interface ContainerSecurity extends CommonSecurity {
  allowPrivilegeEscalation?: boolean;
  readOnlyRootFilesystem?: boolean;
  capabilities: { add: string[]; drop: string[] };
}

function onlyKeys(o: Obj, keys: readonly string[], field: string): void {
  for (const k of Object.keys(o)) if (!keys.includes(k)) throw invalidArgument('is not supported by this node', { field: `${field}.${k}` });
}

function id(v: unknown, field: string): number | undefined {
  if (v === undefined || v === null) return undefined;
  if (!Number.isInteger(v) || (v as number) < 0 || (v as number) > 2147483647) throw invalidArgument(`must be a user or group id 0-2147483647, got ${JSON.stringify(v)}`, { field });
  return v as number;
}

function bool(v: unknown, field: string): boolean | undefined {
  if (v === undefined || v === null) return undefined;
  if (typeof v !== 'boolean') throw invalidArgument('must be true or false', { field });
  return v;
}

function seccompOf(v: unknown, field: string): SeccompSpec | undefined {
  if (v === undefined || v === null) return undefined;
  if (!isObj(v)) throw invalidArgument('must be an object', { field });
  onlyKeys(v, ['type', 'localhostProfile'], field);
  if (v.type !== 'RuntimeDefault' && v.type !== 'Unconfined' && v.type !== 'Localhost') throw invalidArgument(`must be RuntimeDefault, Unconfined or Localhost, got ${JSON.stringify(v.type)}`, { field: `${field}.type` });
  if (v.type === 'Localhost') {
    if (typeof v.localhostProfile !== 'string' || v.localhostProfile === '' || v.localhostProfile.startsWith('/') || v.localhostProfile.split('/').includes('..')) {
      throw invalidArgument('a Localhost profile needs localhostProfile, a path relative to the node\'s seccomp folder', { field: `${field}.localhostProfile` });
    }
    return { type: 'Localhost', localhostProfile: v.localhostProfile };
  }
  return { type: v.type };
}

function appArmorOf(v: unknown, field: string): CommonSecurity['appArmor'] {
  if (v === undefined || v === null) return undefined;
  if (!isObj(v)) throw invalidArgument('must be an object', { field });
  if (v.type === 'RuntimeDefault' || v.type === 'Unconfined') return v.type;
  if (v.type === 'Localhost') throw invalidArgument('a Localhost AppArmor profile cannot be loaded by a rootless node', { field: `${field}.type` });
  throw invalidArgument(`must be RuntimeDefault, Unconfined or Localhost, got ${JSON.stringify(v.type)}`, { field: `${field}.type` });
}

function common(v: Obj, field: string): CommonSecurity {
  const runAsUser = id(v.runAsUser, `${field}.runAsUser`);
  const runAsGroup = id(v.runAsGroup, `${field}.runAsGroup`);
  const runAsNonRoot = bool(v.runAsNonRoot, `${field}.runAsNonRoot`);
  const seccomp = seccompOf(v.seccompProfile, `${field}.seccompProfile`);
  const appArmor = appArmorOf(v.appArmorProfile, `${field}.appArmorProfile`);
  if (runAsNonRoot && runAsUser === 0) throw invalidArgument('runAsNonRoot is true but runAsUser is 0', { field: `${field}.runAsUser` });
  return {
    ...(runAsUser !== undefined ? { runAsUser } : {}),
    ...(runAsGroup !== undefined ? { runAsGroup } : {}),
    ...(runAsNonRoot !== undefined ? { runAsNonRoot } : {}),
    ...(seccomp ? { seccomp } : {}),
    ...(appArmor ? { appArmor } : {}),
  };
}

// SELinux is not enabled on the hosts a rootless node runs on, and Windows options are for Windows: both pass.
const ignoredKeys = ['seLinuxOptions', 'windowsOptions', 'seLinuxChangePolicy'];

export function podSecurityOf(v: unknown, field = 'spec.securityContext'): PodSecurity {
  if (v === undefined || v === null) return { supplementalGroups: [], sysctls: {} };
  if (!isObj(v)) throw invalidArgument('must be an object', { field });
  onlyKeys(v, ['runAsUser', 'runAsGroup', 'runAsNonRoot', 'seccompProfile', 'appArmorProfile', 'supplementalGroups', 'supplementalGroupsPolicy', 'fsGroup', 'fsGroupChangePolicy', 'sysctls', ...ignoredKeys], field);
  const groups = v.supplementalGroups ?? [];
  if (!Array.isArray(groups)) throw invalidArgument('must be a list of group ids', { field: `${field}.supplementalGroups` });
  const supplementalGroups = groups.map((g, i) => id(g, `${field}.supplementalGroups[${i}]`)!);
  const policy = v.supplementalGroupsPolicy;
  if (policy !== undefined && policy !== 'Merge' && policy !== 'Strict') throw invalidArgument(`must be Merge or Strict, got ${JSON.stringify(policy)}`, { field: `${field}.supplementalGroupsPolicy` });
  const sysctls: Record<string, string> = {};
  const list = v.sysctls ?? [];
  if (!Array.isArray(list)) throw invalidArgument('must be a list of { name, value }', { field: `${field}.sysctls` });
  list.forEach((s: unknown, i: number) => {
    if (!isObj(s) || typeof s.name !== 'string' || !/^[a-z0-9]([-_a-z0-9]*[a-z0-9])?([./][a-z0-9]([-_a-z0-9]*[a-z0-9])?)*$/.test(s.name) || typeof s.value !== 'string') {
      throw invalidArgument('must be { name: a sysctl name, value: a string }', { field: `${field}.sysctls[${i}]` });
    }
    sysctls[s.name] = s.value;
  });
  const fsGroup = id(v.fsGroup, `${field}.fsGroup`);
  return {
    ...common(v, field),
    supplementalGroups,
    ...(policy ? { supplementalGroupsPolicy: policy } : {}),
    ...(fsGroup !== undefined ? { fsGroup } : {}),
    sysctls,
  };
}

const capability = /^(CAP_)?[A-Z_]+$/;

export function containerSecurityOf(v: unknown, field: string): ContainerSecurity {
  if (v === undefined || v === null) return { capabilities: { add: [], drop: [] } };
  if (!isObj(v)) throw invalidArgument('must be an object', { field });
  onlyKeys(v, ['runAsUser', 'runAsGroup', 'runAsNonRoot', 'seccompProfile', 'appArmorProfile', 'allowPrivilegeEscalation', 'readOnlyRootFilesystem', 'capabilities', 'privileged', 'procMount', ...ignoredKeys], field);
  if (v.privileged === true) throw invalidArgument('privileged containers cannot run on a rootless node (they would need the host\'s root)', { field: `${field}.privileged` });
  bool(v.privileged, `${field}.privileged`);
  if (v.procMount !== undefined && v.procMount !== null && v.procMount !== 'Default') throw invalidArgument(`only Default is supported, got ${JSON.stringify(v.procMount)}`, { field: `${field}.procMount` });
  const caps = { add: [] as string[], drop: [] as string[] };
  if (v.capabilities !== undefined && v.capabilities !== null) {
    if (!isObj(v.capabilities)) throw invalidArgument('must be an object', { field: `${field}.capabilities` });
    onlyKeys(v.capabilities, ['add', 'drop'], `${field}.capabilities`);
    for (const k of ['add', 'drop'] as const) {
      const l = v.capabilities[k] ?? [];
      if (!Array.isArray(l) || l.some((c) => typeof c !== 'string' || !(capability.test(c) || c === 'ALL'))) throw invalidArgument('must be a list of capability names such as NET_ADMIN or ALL', { field: `${field}.capabilities.${k}` });
      caps[k] = l as string[];
    }
  }
  const allowPrivilegeEscalation = bool(v.allowPrivilegeEscalation, `${field}.allowPrivilegeEscalation`);
  const readOnlyRootFilesystem = bool(v.readOnlyRootFilesystem, `${field}.readOnlyRootFilesystem`);
  return {
    ...common(v, field),
    ...(allowPrivilegeEscalation !== undefined ? { allowPrivilegeEscalation } : {}),
    ...(readOnlyRootFilesystem !== undefined ? { readOnlyRootFilesystem } : {}),
    capabilities: caps,
  };
}

const profile = (s: SeccompSpec | undefined): object | undefined =>
  s === undefined ? undefined : { profileType: s.type, ...(s.localhostProfile ? { localhostRef: s.localhostProfile } : {}) };

/** The pod's part of the sandbox config: LinuxSandboxSecurityContext (without namespace options) and sysctls. */
export function criSandboxSecurity(p: PodSecurity): { securityContext: object; sysctls: Record<string, string> } {
  const seccomp = profile(p.seccomp);
  return {
    securityContext: {
      ...(p.runAsUser !== undefined ? { runAsUser: { value: p.runAsUser } } : {}),
      ...(p.runAsGroup !== undefined ? { runAsGroup: { value: p.runAsGroup } } : {}),
      supplementalGroups: [...p.supplementalGroups, ...(p.fsGroup !== undefined ? [p.fsGroup] : [])],
      ...(p.supplementalGroupsPolicy ? { supplementalGroupsPolicy: p.supplementalGroupsPolicy } : {}),
      ...(seccomp ? { seccomp } : {}),
    },
    sysctls: p.sysctls,
  };
}

/** LinuxContainerSecurityContext for container `c` of a pod (without namespace options). */
export function criContainerSecurity(p: PodSecurity, c: ContainerSecurity): object {
  const runAsUser = c.runAsUser ?? p.runAsUser;
  const runAsGroup = c.runAsGroup ?? p.runAsGroup;
  const seccomp = profile(c.seccomp ?? p.seccomp);
  const appArmor = c.appArmor ?? p.appArmor;
  return {
    capabilities: { addCapabilities: c.capabilities.add, dropCapabilities: c.capabilities.drop },
    ...(runAsUser !== undefined ? { runAsUser: { value: runAsUser } } : {}),
    ...(runAsGroup !== undefined ? { runAsGroup: { value: runAsGroup } } : {}),
    readonlyRootfs: c.readOnlyRootFilesystem === true,
    supplementalGroups: [...p.supplementalGroups, ...(p.fsGroup !== undefined ? [p.fsGroup] : [])],
    ...(p.supplementalGroupsPolicy ? { supplementalGroupsPolicy: p.supplementalGroupsPolicy } : {}),
    // kubelet: no_new_privs only when escalation is explicitly refused.
    noNewPrivs: c.allowPrivilegeEscalation === false,
    ...(seccomp ? { seccomp } : {}),
    ...(appArmor ? { apparmor: { profileType: appArmor } } : {}),
  };
}

/**
 * kubelet's runAsNonRoot check, made before the container is created: the
 * user it will run as (the securityContext's, else the image's) must be a
 * uid other than 0; an image user given by name cannot be checked, so it is
 * refused, as kubelet refuses it.
 */
export function nonRootProblem(p: PodSecurity, c: ContainerSecurity, image: { uid?: number; username?: string }): string | undefined {
  if (!(c.runAsNonRoot ?? p.runAsNonRoot)) return undefined;
  const uid = c.runAsUser ?? p.runAsUser;
  if (uid !== undefined) return uid === 0 ? 'container has runAsNonRoot and runAsUser 0: it would run as root' : undefined;
  if (image.uid !== undefined) return image.uid === 0 ? 'container has runAsNonRoot and image will run as root' : undefined;
  if (image.username && image.username !== '') return `container has runAsNonRoot and image has non-numeric user (${image.username}), cannot verify user is non-root`;
  return 'container has runAsNonRoot and image will run as root';
}
