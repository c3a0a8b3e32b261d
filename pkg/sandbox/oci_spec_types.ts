// The two sides of oci_spec.ts: the CRI fields the spec is built from, as
// plain shapes (pkg/sandbox never imports proto/ or grpc-js; these mirror the
// camelCase objects @grpc/proto-loader decodes with longs and enums as
// strings, so a decoded ContainerConfig passes as is), and the subset of the
// OCI runtime spec 1.0.2 (runtime-spec config.json, what runc 1.1 reads) that
// buildOciSpec emits.

// ---- CRI (k8s.io/cri-api runtime/v1) ----

/** int64 fields arrive as decimal strings (proto-loader `longs: String`). */
export type CriInt64 = string | number;

export interface CriKeyValue {
  key: string;
  /** A string in the CRI; bytes in this project's proto, so either is accepted. */
  value: string | Uint8Array;
}

export type CriMountPropagation = 'PROPAGATION_PRIVATE' | 'PROPAGATION_HOST_TO_CONTAINER' | 'PROPAGATION_BIDIRECTIONAL';

/** runtime.v1.IDMapping */
export interface IdMapping {
  hostId: number;
  containerId: number;
  length: number;
}

export interface CriImageSpec {
  image: string;
  userSpecifiedImage?: string;
}

/** runtime.v1.Mount */
export interface CriMount {
  containerPath: string;
  hostPath: string;
  readonly?: boolean;
  /** Ignored: no SELinux labelling rootless. */
  selinuxRelabel?: boolean;
  propagation?: CriMountPropagation;
  /** Idmapped bind mounts: runc 1.1 has none, so any mapping is refused. */
  uidMappings?: IdMapping[];
  gidMappings?: IdMapping[];
  recursiveReadOnly?: boolean;
  /** An image volume (KEP-4639): not supported, refused. */
  image?: CriImageSpec | null;
}

/** runtime.v1.Device: recorded, not applied (see oci_spec.ts). */
export interface CriDevice {
  containerPath: string;
  hostPath: string;
  permissions: string;
}

export interface CriCapability {
  addCapabilities?: string[];
  dropCapabilities?: string[];
  /** Ignored like containerd does: ambient capabilities stay empty. */
  addAmbientCapabilities?: string[];
}

export type CriProfileType = 'RuntimeDefault' | 'Unconfined' | 'Localhost';

/** runtime.v1.SecurityProfile */
export interface CriSecurityProfile {
  profileType: CriProfileType;
  localhostRef?: string;
}

export type CriSupplementalGroupsPolicy = 'Merge' | 'Strict';

export interface CriInt64Value {
  value: CriInt64;
}

/** runtime.v1.LinuxContainerSecurityContext */
export interface CriLinuxContainerSecurityContext {
  capabilities?: CriCapability | null;
  privileged?: boolean;
  runAsUser?: CriInt64Value | null;
  runAsUsername?: string;
  runAsGroup?: CriInt64Value | null;
  readonlyRootfs?: boolean;
  supplementalGroups?: CriInt64[];
  supplementalGroupsPolicy?: CriSupplementalGroupsPolicy;
  /** Deprecated form of `apparmor`; ignored (no AppArmor rootless). */
  apparmorProfile?: string;
  apparmor?: CriSecurityProfile | null;
  /** Deprecated form of `seccomp`: "runtime/default", "docker/default", "unconfined", "localhost/<path>". */
  seccompProfilePath?: string;
  seccomp?: CriSecurityProfile | null;
  noNewPrivs?: boolean;
  maskedPaths?: string[];
  readonlyPaths?: string[];
}

export interface CriHugepageLimit {
  pageSize: string;
  limit: CriInt64;
}

/** runtime.v1.LinuxContainerResources */
export interface CriLinuxContainerResources {
  cpuPeriod?: CriInt64;
  cpuQuota?: CriInt64;
  cpuShares?: CriInt64;
  memoryLimitInBytes?: CriInt64;
  memorySwapLimitInBytes?: CriInt64;
  oomScoreAdj?: CriInt64;
  cpusetCpus?: string;
  cpusetMems?: string;
  hugepageLimits?: CriHugepageLimit[];
  unified?: Record<string, string>;
}

export interface CriLinuxContainerConfig {
  resources?: CriLinuxContainerResources | null;
  securityContext?: CriLinuxContainerSecurityContext | null;
}

export interface CriContainerMetadata {
  name: string;
  attempt?: number;
}

/** runtime.v1.ContainerConfig, the fields the spec is built from. */
export interface CriContainerConfig {
  metadata?: CriContainerMetadata | null;
  image?: CriImageSpec | null;
  command?: string[];
  args?: string[];
  workingDir?: string;
  envs?: CriKeyValue[];
  mounts?: CriMount[];
  devices?: CriDevice[];
  labels?: Record<string, string>;
  annotations?: Record<string, string>;
  logPath?: string;
  stdin?: boolean;
  stdinOnce?: boolean;
  tty?: boolean;
  linux?: CriLinuxContainerConfig | null;
}

// ---- OCI runtime spec 1.0.2 ----

export interface OciUser {
  uid: number;
  gid: number;
  additionalGids?: number[];
}

export interface OciCapabilities {
  bounding: string[];
  effective: string[];
  inheritable: string[];
  permitted: string[];
  ambient: string[];
}

export type OciRlimitType = 'RLIMIT_NOFILE' | 'RLIMIT_NPROC' | 'RLIMIT_CORE' | 'RLIMIT_MEMLOCK' | 'RLIMIT_STACK';

export interface OciRlimit {
  type: OciRlimitType;
  hard: number;
  soft: number;
}

export interface OciProcess {
  terminal: boolean;
  user: OciUser;
  args: string[];
  env: string[];
  cwd: string;
  capabilities: OciCapabilities;
  rlimits?: OciRlimit[];
  noNewPrivileges: boolean;
  oomScoreAdj?: number;
}

export interface OciRoot {
  path: string;
  readonly: boolean;
}

export interface OciMount {
  destination: string;
  type: string;
  source: string;
  options: string[];
}

export type OciNamespaceType = 'pid' | 'network' | 'mount' | 'ipc' | 'uts' | 'user' | 'cgroup';

export interface OciNamespace {
  type: OciNamespaceType;
  path?: string;
}

export interface OciIdMapping {
  containerID: number;
  hostID: number;
  size: number;
}

export interface OciCpu {
  shares?: number;
  quota?: number;
  period?: number;
  cpus?: string;
  mems?: string;
}

export interface OciMemory {
  limit?: number;
  swap?: number;
}

export interface OciResources {
  cpu?: OciCpu;
  memory?: OciMemory;
  pids?: { limit: number };
  unified?: Record<string, string>;
}

export interface OciLinux {
  namespaces: OciNamespace[];
  uidMappings?: OciIdMapping[];
  gidMappings?: OciIdMapping[];
  sysctl?: Record<string, string>;
  resources?: OciResources;
  cgroupsPath?: string;
  rootfsPropagation?: 'rshared' | 'rslave' | 'rprivate';
  maskedPaths: string[];
  readonlyPaths: string[];
  /** A runtime-spec LinuxSeccomp object, loaded by the caller; passed through unread. */
  seccomp?: object;
}

export interface OciSpec {
  ociVersion: '1.0.2';
  process: OciProcess;
  root: OciRoot;
  mounts: OciMount[];
  linux: OciLinux;
  annotations: Record<string, string>;
}
