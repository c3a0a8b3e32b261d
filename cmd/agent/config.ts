import { accessSync, constants, readFileSync, statSync } from 'node:fs';
import { isIP } from 'node:net';
import { homedir, hostname, userInfo } from 'node:os';
import { delimiter, isAbsolute, join, resolve } from 'node:path';

import { parse as parseYaml, YAMLParseError } from 'yaml';

import { invalidArgument } from '../../pkg/errdefs/errors.js';
import { isLogLevel, type LogLevel } from '../../pkg/log/logger.js';
import type { ToolPaths } from '../../pkg/node/preflight.js';
import { parseQuantity } from '../../pkg/node/quantity.js';

// The agent's configuration: defaults from the user's XDG folders, then the
// config file (YAML), then flags. This file and main.ts are the only places
// that read the environment.

export interface AgentConfig {
  uid: number;
  gid: number;
  username: string;
  configFile: string | undefined;
  /** $XDG_RUNTIME_DIR (undefined when neither it nor /run/user/UID exists). */
  xdgRuntimeDir: string | undefined;
  /** $XDG_RUNTIME_DIR/usernode: socket, pid files, node namespace state. */
  runtimeDir: string;
  /** $XDG_DATA_HOME/usernode: records, images, logs. */
  dataDir: string;
  criSocket: string;
  logLevel: LogLevel;
  network: { mtu: number; podCIDR: string; bridge: string; networkName: string };
  tools: ToolPaths & Record<(typeof helperTools)[number], string | undefined>;
  /** Where the node half serves /metrics (host, port); port 0 picks a free one. */
  metrics: { host: string; port: number };
  /**
   * The streaming server (Exec/Attach/PortForward URLs): the same address on
   * the node namespace's side and, forwarded by rootlesskit, on the host's;
   * port 0 picks one free on both.
   */
  streaming: { host: string; port: number };
  /** The static pod folder (kubelet's staticPodPath): the pods its manifests name run on this node. */
  staticPodPath: string;
  /** auto: overlayfs where the user namespace allows it, else copy. */
  snapshotter: 'auto' | 'overlayfs' | 'copy';
  /** Registry hosts: mirrors and plain HTTP (config file `registries`). */
  registries: Record<string, { plainHttp?: boolean; mirrors?: string[] }>;
  /** Joining a cluster (kubelet's flags of the same names). */
  cluster: ClusterConfig;
  /** Container log rotation (kubelet's containerLogMaxSize, containerLogMaxFiles, containerLogMonitorInterval). */
  containerLogs: ContainerLogConfig;
}

export interface ContainerLogConfig {
  maxSizeBytes: number;
  maxFiles: number;
  monitorIntervalMs: number;
  /** As written (kubelet's own syntax), for kubelet mode's KubeletConfiguration. */
  maxSize: string;
  monitorInterval: string;
}

export interface ClusterConfig {
  /** The node's credentials for the kube-apiserver; none: static pods only. */
  kubeconfig: string | undefined;
  nodeName: string;
  /** The node's InternalIP; default: the host's first non-loopback IPv4. */
  nodeIP: string | undefined;
  nodeLabels: Record<string, string>;
  taints: Array<{ key: string; value?: string; effect: 'NoSchedule' | 'PreferNoSchedule' | 'NoExecute' }>;
  maxPods: number;
  /** The kubelet API (TLS); served with a kubeconfig, or when set. */
  kubeletAddress: { host: string; port: number } | undefined;
  clientCAFile: string | undefined;
  tlsCertFile: string | undefined;
  tlsKeyFile: string | undefined;
  anonymousAuth: boolean;
  /** Connections the kubelet API holds open at once (kubelet has no cap; default 1024). */
  kubeletMaxConnections: number;
  /** kubelet's clusterDNS (the cluster DNS service IPs) and clusterDomain, for ClusterFirst pods. */
  clusterDNS: string[];
  clusterDomain: string;
  /**
   * Kubelet mode: the upstream kubelet at this path runs inside the node
   * namespace on the runtime's CRI socket, and the agent's own node half stays
   * off (one registrar per node). Needs a kubeconfig.
   */
  kubelet: string | undefined;
}

/** Derived paths, so every subcommand agrees on them. */
export function pathsOf(c: AgentConfig) {
  return {
    agentPid: join(c.runtimeDir, 'agent.pid'),
    runtimePid: join(c.runtimeDir, 'runtime.pid'),
    rootlesskitState: join(c.runtimeDir, 'rootlesskit'),
    nodeNamespaceRecord: join(c.runtimeDir, 'node-namespace.json'),
    rootlesskitLog: join(c.runtimeDir, 'rootlesskit.log'),
    resolvedConfig: join(c.runtimeDir, 'runtime-config.json'),
    runtimeMetricsSocket: join(c.runtimeDir, 'runtime-metrics.sock'),
    podNamespacesDir: join(c.runtimeDir, 'netns'),
    podLogsDir: join(c.dataDir, 'pods', 'logs'),
    sandboxRecordsDir: join(c.dataDir, 'pods', 'sandboxes'),
    podFilesDir: join(c.dataDir, 'pods', 'files'),
    containerRecordsDir: join(c.dataDir, 'pods', 'containers'),
    bundlesDir: join(c.runtimeDir, 'bundles'),
    exitDir: join(c.runtimeDir, 'exits'),
    attachDir: join(c.runtimeDir, 'attach'),
    runcRoot: join(c.runtimeDir, 'runc'),
    cniConfDir: join(c.dataDir, 'cni', 'net.d'),
    cniIpamDir: join(c.dataDir, 'cni', 'ipam'),
    imagesDir: join(c.dataDir, 'images'),
    snapshotsDir: join(c.dataDir, 'snapshots'),
    // Kubelet mode: its generated KubeletConfiguration, its log, and the folders
    // bound at /var/lib/kubelet, /var/log/pods and /var/log/containers inside the node namespace.
    kubeletDir: join(c.dataDir, 'kubelet'),
    kubeletConfig: join(c.dataDir, 'kubelet', 'config.yaml'),
    kubeletLog: join(c.dataDir, 'kubelet', 'kubelet.log'),
    kubeletPid: join(c.runtimeDir, 'kubelet.pid'),
    kubeletRoot: join(c.dataDir, 'kubelet', 'root'),
    kubeletPodLogs: join(c.dataDir, 'kubelet', 'pod-logs'),
    kubeletContainerLogs: join(c.dataDir, 'kubelet', 'container-logs'),
  };
}

// Tools live in sbin folders a normal user's PATH lacks (DESIGN.md, host facts).
const toolDirs = ['/usr/local/sbin', '/usr/local/bin', '/usr/sbin', '/usr/bin', '/sbin', '/bin'];

export function findTool(name: string, pathEnv: string | undefined): string | undefined {
  const dirs = [...toolDirs, ...(pathEnv ?? '').split(delimiter).filter(Boolean)];
  for (const d of dirs) {
    const p = join(d, name);
    try {
      accessSync(p, constants.X_OK);
      if (statSync(p).isFile()) return p;
    } catch {
      // Not here.
    }
  }
  return undefined;
}

/** PATH for the processes the agent starts: sbin folders first, then the user's. */
export function toolPath(pathEnv: string | undefined): string {
  return [...toolDirs, ...(pathEnv ?? '').split(delimiter).filter(Boolean)].filter((d, i, a) => a.indexOf(d) === i).join(delimiter);
}

export interface ConfigFlags {
  config?: string | undefined;
  logLevel?: string | undefined;
  criSocket?: string | undefined;
  kubeconfig?: string | undefined;
  nodeName?: string | undefined;
  nodeIp?: string | undefined;
  nodeLabels?: string | undefined;
  registerWithTaints?: string | undefined;
  kubeletAddress?: string | undefined;
  clusterDns?: string | undefined;
  clusterDomain?: string | undefined;
  kubelet?: string | undefined;
}

/** Tools the agent uses but `run` does not require: features that need one say so when it is missing. */
const helperTools = ['sleep', 'mount', 'umount', 'mknod', 'mkfifo', 'setfattr', 'cp', 'unshare', 'socat', 'script', 'stty', 'ip', 'sysctl'] as const;
const toolKeys = ['rootlesskit', 'slirp4netns', 'newuidmap', 'newgidmap', 'runc', 'conmon', 'catatonit', 'nsenter', 'iptables', ...helperTools] as const;
const clusterKeys = ['kubeconfig', 'nodeName', 'nodeIP', 'nodeLabels', 'registerWithTaints', 'maxPods', 'kubeletAddress', 'clientCAFile', 'tlsCertFile', 'tlsKeyFile', 'anonymousAuth', 'kubeletMaxConnections', 'clusterDNS', 'clusterDomain', 'kubelet'] as const;
const containerLogKeys = ['containerLogMaxSize', 'containerLogMaxFiles', 'containerLogMonitorInterval'] as const;
const topKeys = ['criSocket', 'dataDir', 'runtimeDir', 'logLevel', 'network', 'tools', 'registries', 'snapshotter', 'metricsAddress', 'streamingAddress', 'staticPodPath', ...containerLogKeys, ...clusterKeys] as const;
const networkKeys = ['mtu', 'podCIDR', 'bridge'] as const;

export function loadConfig(flags: ConfigFlags, env: NodeJS.ProcessEnv = process.env): AgentConfig {
  const me = userInfo();
  const home = env.HOME || homedir();
  const defaultFile = join(env.XDG_CONFIG_HOME || join(home, '.config'), 'usernode', 'config.yaml');
  let configFile = flags.config;
  if (configFile === undefined && exists(defaultFile)) configFile = defaultFile;
  const file = configFile === undefined ? {} : readConfigFile(configFile, flags.config !== undefined ? '--config' : defaultFile);
  const where = configFile ?? 'config';

  const xdgRuntimeDir = env.XDG_RUNTIME_DIR || (exists(`/run/user/${me.uid}`) ? `/run/user/${me.uid}` : undefined);
  const runtimeDir = str(file, 'runtimeDir', where) ?? join(xdgRuntimeDir ?? `/run/user/${me.uid}`, 'usernode');
  const dataDir = str(file, 'dataDir', where) ?? join(env.XDG_DATA_HOME || join(home, '.local', 'share'), 'usernode');
  const criSocket = flags.criSocket ?? str(file, 'criSocket', where) ?? join(runtimeDir, 'cri.sock');
  const origin = (key: string, flag?: string): string =>
    flag !== undefined && (flags as Record<string, unknown>)[flag] !== undefined ? `--${kebab(key)}` : `${where}: ${key}`;
  for (const [key, p] of [['runtimeDir', runtimeDir], ['dataDir', dataDir], ['criSocket', criSocket]] as const) {
    if (!isAbsolute(p)) throw bad(`must be an absolute path, got "${p}"`, { field: origin(key, key === 'criSocket' ? 'criSocket' : undefined) });
  }
  if (Buffer.byteLength(criSocket) > 107) {
    throw bad(`is ${Buffer.byteLength(criSocket)} bytes long; a unix socket path may have 107: ${criSocket}`, { field: origin('criSocket', 'criSocket') });
  }

  const level = flags.logLevel ?? str(file, 'logLevel', where) ?? 'info';
  if (!isLogLevel(level)) {
    throw bad(`log level must be one of debug, info, warn, error; got "${level}"`, { field: flags.logLevel ? '--log-level' : `${where}: logLevel` });
  }

  const net = obj(file, 'network', where, networkKeys);
  const mtu = net.mtu ?? 65520;
  if (typeof mtu !== 'number' || !Number.isInteger(mtu) || mtu < 1280 || mtu > 65520) {
    throw bad(`network.mtu must be an integer between 1280 and 65520, got ${JSON.stringify(mtu)}`, { field: `${where}: network.mtu` });
  }
  const podCIDR = net.podCIDR ?? '10.88.0.0/16';
  const cidrError = typeof podCIDR === 'string' ? checkCidr(podCIDR) : 'must be a string';
  if (cidrError) {
    throw bad(`network.podCIDR ${cidrError}, got ${JSON.stringify(podCIDR)}`, { field: `${where}: network.podCIDR` });
  }
  const bridge = net.bridge ?? 'usernode0';
  if (typeof bridge !== 'string' || !/^[a-zA-Z0-9_.-]{1,15}$/.test(bridge)) {
    throw bad(`network.bridge must be an interface name of at most 15 characters, got ${JSON.stringify(bridge)}`, { field: `${where}: network.bridge` });
  }

  const t = obj(file, 'tools', where, [...toolKeys, 'cniBinDir']);
  const tool = (k: (typeof toolKeys)[number]): string | undefined => {
    const v = t[k];
    if (v === undefined) return findTool(k, env.PATH);
    if (typeof v !== 'string' || !isAbsolute(v)) throw bad(`tools.${k} must be an absolute path`, { field: `${where}: tools.${k}` });
    return v;
  };
  const cniBinDir = t.cniBinDir ?? '/usr/lib/cni';
  if (typeof cniBinDir !== 'string' || !isAbsolute(cniBinDir)) {
    throw bad('tools.cniBinDir must be an absolute path', { field: `${where}: tools.cniBinDir` });
  }

  return {
    uid: me.uid,
    gid: me.gid,
    username: me.username,
    configFile,
    xdgRuntimeDir,
    runtimeDir,
    dataDir,
    criSocket,
    logLevel: level,
    network: { mtu, podCIDR: podCIDR as string, bridge, networkName: 'usernode' },
    tools: {
      rootlesskit: tool('rootlesskit'),
      slirp4netns: tool('slirp4netns'),
      newuidmap: tool('newuidmap'),
      newgidmap: tool('newgidmap'),
      runc: tool('runc'),
      conmon: tool('conmon'),
      catatonit: tool('catatonit'),
      nsenter: tool('nsenter'),
      iptables: tool('iptables'),
      ...(Object.fromEntries(helperTools.map((k) => [k, tool(k)])) as Record<(typeof helperTools)[number], string | undefined>),
      cniBinDir,
    },
    registries: registriesOf(file, where),
    snapshotter: snapshotterOf(file, where),
    metrics: addressOf(file, 'metricsAddress', '127.0.0.1:10255', where),
    streaming: addressOf(file, 'streamingAddress', '127.0.0.1:0', where),
    staticPodPath: staticPodPathOf(file, env.XDG_CONFIG_HOME || join(env.HOME || homedir(), '.config'), where),
    cluster: clusterOf(file, flags, where),
    containerLogs: containerLogsOf(file, where),
  };
}

/**
 * kubelet's log rotation settings and their checks: a quantity of bytes
 * (10Mi), at least 2 files (the current one and one rotated), an interval
 * in Go's duration syntax of at least 3s.
 */
export function containerLogsOf(t: Table, where: string): ContainerLogConfig {
  const sizeField = `${where}: containerLogMaxSize`;
  const sizeRaw = t.containerLogMaxSize ?? '10Mi';
  let maxSizeBytes: number;
  try {
    if (typeof sizeRaw !== 'string' && typeof sizeRaw !== 'number') throw new Error();
    maxSizeBytes = Math.floor(parseQuantity(sizeRaw, sizeField));
  } catch {
    throw bad(`must be a quantity of bytes such as 10Mi, 500Ki or 1G, got ${JSON.stringify(sizeRaw)}`, { field: sizeField });
  }
  if (maxSizeBytes < 1) throw bad(`must be at least 1 byte, got ${JSON.stringify(sizeRaw)}`, { field: sizeField });
  const maxFiles = t.containerLogMaxFiles ?? 5;
  if (typeof maxFiles !== 'number' || !Number.isInteger(maxFiles) || maxFiles < 2) {
    throw bad(`must be a whole number greater than 1 (the current file and at least one rotated), got ${JSON.stringify(maxFiles)}`, { field: `${where}: containerLogMaxFiles` });
  }
  const intervalField = `${where}: containerLogMonitorInterval`;
  const intervalRaw = t.containerLogMonitorInterval ?? '10s';
  const monitorIntervalMs = typeof intervalRaw === 'string' ? goDurationMs(intervalRaw) : undefined;
  if (monitorIntervalMs === undefined) throw bad(`must be a duration such as 10s or 1m30s, got ${JSON.stringify(intervalRaw)}`, { field: intervalField });
  if (monitorIntervalMs < 3000) throw bad(`must be at least 3s, got ${JSON.stringify(intervalRaw)}`, { field: intervalField });
  return { maxSizeBytes, maxFiles, monitorIntervalMs, maxSize: String(sizeRaw), monitorInterval: intervalRaw as string };
}

/** A Go time.Duration string (1h2m3.5s, 500ms) in milliseconds; undefined when it is not one. */
export function goDurationMs(s: string): number | undefined {
  const units: Record<string, number> = { ns: 1e-6, us: 1e-3, 'µs': 1e-3, ms: 1, s: 1000, m: 60000, h: 3600000 };
  if (!/^(\d+(\.\d+)?(ns|us|µs|ms|s|m|h))+$/.test(s)) return undefined;
  let ms = 0;
  for (const m of s.matchAll(/(\d+(?:\.\d+)?)(ns|us|µs|ms|s|m|h)/g)) ms += Number(m[1]) * units[m[2]!]!;
  return ms;
}

// kubelet refuses --node-labels in the kubernetes.io and k8s.io namespaces
// except these (the NodeRestriction admission plugin would refuse the Node).
const allowedNodeLabels = new Set([
  'kubernetes.io/hostname', 'kubernetes.io/instance-type', 'kubernetes.io/os', 'kubernetes.io/arch',
  'beta.kubernetes.io/instance-type', 'beta.kubernetes.io/os', 'beta.kubernetes.io/arch',
  'failure-domain.beta.kubernetes.io/zone', 'failure-domain.beta.kubernetes.io/region',
  'topology.kubernetes.io/zone', 'topology.kubernetes.io/region', 'node.kubernetes.io/instance-type',
]);
const labelKey = /^([a-z0-9]([-a-z0-9.]{0,251}[a-z0-9])?\/)?[A-Za-z0-9]([-A-Za-z0-9_.]{0,61}[A-Za-z0-9])?$/;
const labelValue = /^([A-Za-z0-9]([-A-Za-z0-9_.]{0,61}[A-Za-z0-9])?)?$/;

function checkLabel(k: string, v: string, field: string): void {
  if (!labelKey.test(k)) throw bad(`label key ${JSON.stringify(k)} is not a valid label name`, { field });
  if (!labelValue.test(v)) throw bad(`label value ${JSON.stringify(v)} of ${k} is not a valid label value`, { field });
  const prefix = k.includes('/') ? k.slice(0, k.indexOf('/')) : '';
  const restricted = /(^|\.)(kubernetes\.io|k8s\.io)$/.test(prefix) && !/(^|\.)(kubelet|node)\.kubernetes\.io$/.test(prefix);
  // node-role.kubernetes.io is the role label operators ask for; NodeRestriction refuses it from a node, so it is allowed here and documented.
  if (restricted && !allowedNodeLabels.has(k) && prefix !== 'node-role.kubernetes.io') {
    throw bad(`label ${k} is in the kubernetes.io/k8s.io namespace, which a node may not set on itself (allowed: ${[...allowedNodeLabels].join(', ')}, and keys under kubelet.kubernetes.io/ or node.kubernetes.io/)`, { field });
  }
}

function clusterOf(t: Table, flags: ConfigFlags, where: string): ClusterConfig {
  const field = (key: string, flag: keyof ConfigFlags): string => (flags[flag] !== undefined ? `--${kebab(flag)}` : `${where}: ${key}`);
  const kubeconfig = flags.kubeconfig !== undefined ? resolve(flags.kubeconfig) : str(t, 'kubeconfig', where);
  if (kubeconfig !== undefined && !isAbsolute(kubeconfig) && flags.kubeconfig === undefined) throw bad('must be an absolute path', { field: `${where}: kubeconfig` });
  const nodeName = (flags.nodeName ?? str(t, 'nodeName', where) ?? hostname()).toLowerCase();
  if (!/^[a-z0-9]([-a-z0-9.]{0,251}[a-z0-9])?$/.test(nodeName)) throw bad(`must be a DNS subdomain (lower-case letters, digits, - and .), got ${JSON.stringify(nodeName)}`, { field: field('nodeName', 'nodeName') });
  const nodeIP = flags.nodeIp ?? str(t, 'nodeIP', where);
  if (nodeIP !== undefined && isIP(nodeIP) === 0) throw bad(`must be an IP address, got ${JSON.stringify(nodeIP)}`, { field: field('nodeIP', 'nodeIp') });
  const labels: Record<string, string> = {};
  const labelField = field('nodeLabels', 'nodeLabels');
  if (flags.nodeLabels !== undefined) {
    for (const kv of flags.nodeLabels.split(',').filter(Boolean)) {
      const i = kv.indexOf('=');
      if (i <= 0) throw bad(`expects key=value[,key=value], got ${JSON.stringify(kv)}`, { field: labelField });
      labels[kv.slice(0, i)] = kv.slice(i + 1);
    }
  } else if (t.nodeLabels !== undefined) {
    const m = t.nodeLabels;
    if (m === null || typeof m !== 'object' || Array.isArray(m) || Object.values(m).some((v) => typeof v !== 'string')) throw bad('must be a mapping of label to string value', { field: labelField });
    Object.assign(labels, m);
  }
  for (const [k, v] of Object.entries(labels)) checkLabel(k, v, labelField);
  const taintField = field('registerWithTaints', 'registerWithTaints');
  const taintTexts = flags.registerWithTaints !== undefined ? flags.registerWithTaints.split(',').filter(Boolean) : t.registerWithTaints === undefined ? [] : t.registerWithTaints;
  if (!Array.isArray(taintTexts) || taintTexts.some((x) => typeof x !== 'string')) throw bad('must be a list of key[=value]:Effect', { field: taintField });
  const taints = (taintTexts as string[]).map((x) => {
    const m = /^([^=:]+)(?:=([^:]*))?:(NoSchedule|PreferNoSchedule|NoExecute)$/.exec(x);
    if (!m || !labelKey.test(m[1]!)) throw bad(`expects key[=value]:NoSchedule|PreferNoSchedule|NoExecute, got ${JSON.stringify(x)}`, { field: taintField });
    return { key: m[1]!, ...(m[2] ? { value: m[2] } : {}), effect: m[3] as ClusterConfig['taints'][number]['effect'] };
  });
  const maxPods = t.maxPods ?? 110;
  if (typeof maxPods !== 'number' || !Number.isInteger(maxPods) || maxPods < 1) throw bad('must be a whole number, 1 or more', { field: `${where}: maxPods` });
  const kubeletText = flags.kubeletAddress ?? (t.kubeletAddress as string | undefined) ?? (kubeconfig !== undefined ? '0.0.0.0:10250' : undefined);
  const kubeletAddress = kubeletText === undefined ? undefined : addressOf({ kubeletAddress: kubeletText }, 'kubeletAddress', '0.0.0.0:10250', flags.kubeletAddress !== undefined ? '--kubelet-address' : where);
  const path = (key: 'clientCAFile' | 'tlsCertFile' | 'tlsKeyFile'): string | undefined => {
    const v = str(t, key, where);
    if (v !== undefined && !isAbsolute(v)) throw bad('must be an absolute path', { field: `${where}: ${key}` });
    return v;
  };
  if ((t.tlsCertFile === undefined) !== (t.tlsKeyFile === undefined)) throw bad('tlsCertFile and tlsKeyFile go together', { field: `${where}: tlsCertFile` });
  if (t.anonymousAuth !== undefined && typeof t.anonymousAuth !== 'boolean') throw bad('must be true or false', { field: `${where}: anonymousAuth` });
  const kubeletMaxConnections = t.kubeletMaxConnections ?? 1024;
  if (typeof kubeletMaxConnections !== 'number' || !Number.isInteger(kubeletMaxConnections) || kubeletMaxConnections < 1) throw bad('must be a whole number, 1 or more', { field: `${where}: kubeletMaxConnections` });
  const dnsField = field('clusterDNS', 'clusterDns');
  const clusterDNS = flags.clusterDns !== undefined ? flags.clusterDns.split(',').filter(Boolean) : (t.clusterDNS ?? []);
  if (!Array.isArray(clusterDNS) || clusterDNS.some((a) => typeof a !== 'string' || isIP(a) === 0)) throw bad('must be a list of IP addresses', { field: dnsField });
  const clusterDomain = (flags.clusterDomain ?? str(t, 'clusterDomain', where) ?? 'cluster.local').replace(/\.$/, '');
  if (!/^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$/.test(clusterDomain)) throw bad(`must be a DNS domain, got ${JSON.stringify(clusterDomain)}`, { field: field('clusterDomain', 'clusterDomain') });
  const kubelet = flags.kubelet !== undefined ? resolve(flags.kubelet) : str(t, 'kubelet', where);
  if (kubelet !== undefined && !isAbsolute(kubelet)) throw bad('must be an absolute path', { field: `${where}: kubelet` });
  // kubelet without an API server has nobody to register with; static pods alone are what the node half already runs.
  if (kubelet !== undefined && kubeconfig === undefined) throw bad('must come with --kubeconfig (kubelet mode joins a cluster)', { field: field('kubelet', 'kubelet') });
  return {
    kubeconfig,
    nodeName,
    nodeIP,
    nodeLabels: labels,
    taints,
    maxPods,
    kubeletAddress,
    clientCAFile: path('clientCAFile'),
    tlsCertFile: path('tlsCertFile'),
    tlsKeyFile: path('tlsKeyFile'),
    anonymousAuth: t.anonymousAuth === true,
    kubeletMaxConnections,
    clusterDNS: clusterDNS as string[],
    clusterDomain,
    kubelet,
  };
}

type Table = Record<string, unknown>;

/** An InvalidArgument whose message starts with the offending setting, flag or file. */
function bad(message: string, o: { field: string }): Error {
  if (message.includes(o.field)) return invalidArgument(message, o);
  const key = o.field.split(': ').pop() ?? '';
  if (key && message.startsWith(`${key} `)) return invalidArgument(`${o.field} ${message.slice(key.length + 1)}`, o);
  if (/^(must|is|has) /.test(message)) return invalidArgument(`${o.field} ${message}`, o);
  return invalidArgument(`${o.field}: ${message}`, o);
}

function readConfigFile(path: string, source: string): Table {
  let text: string;
  try {
    text = readFileSync(path, 'utf8');
  } catch (e: unknown) {
    const code = (e as NodeJS.ErrnoException).code;
    throw bad(`config file ${path} ${code === 'ENOENT' ? 'does not exist' : `cannot be read (${code})`}`, { field: source });
  }
  let doc: unknown;
  try {
    doc = parseYaml(text);
  } catch (e: unknown) {
    const where = e instanceof YAMLParseError && e.linePos ? ` at line ${e.linePos[0].line}, column ${e.linePos[0].col}` : '';
    const first = (e as Error).message.split("\n")[0]?.replace(/ at line \d+, column \d+:?$/, "");
    throw bad(`config file ${path} is not valid YAML${where}: ${first}`, { field: source });
  }
  if (doc === null || doc === undefined) return {};
  if (typeof doc !== 'object' || Array.isArray(doc)) throw bad(`config file ${path} must hold a mapping of settings`, { field: source });
  const table = doc as Table;
  for (const k of Object.keys(table)) {
    if (!(topKeys as readonly string[]).includes(k)) {
      throw bad(`unknown setting "${k}" (known: ${topKeys.join(', ')})`, { field: path });
    }
  }
  return table;
}

function str(t: Table, key: string, where: string): string | undefined {
  const v = t[key];
  if (v === undefined) return undefined;
  if (typeof v !== 'string' || v === '') throw bad(`${key} must be a non-empty string`, { field: `${where}: ${key}` });
  return v;
}

function obj(t: Table, key: string, where: string, known: readonly string[]): Table {
  const v = t[key];
  if (v === undefined || v === null) return {};
  if (typeof v !== 'object' || Array.isArray(v)) throw bad(`${key} must be a mapping`, { field: `${where}: ${key}` });
  for (const k of Object.keys(v)) {
    if (!known.includes(k)) throw bad(`unknown setting (known: ${known.join(', ')})`, { field: `${where}: ${key}.${k}` });
  }
  return v as Table;
}

function staticPodPathOf(t: Table, configHome: string, where: string): string {
  const v = t.staticPodPath ?? join(configHome, 'usernode', 'manifests');
  if (typeof v !== 'string' || !isAbsolute(v)) throw bad(`must be an absolute path, got ${JSON.stringify(v)}`, { field: `${where}: staticPodPath` });
  return v;
}

function addressOf(t: Table, key: 'metricsAddress' | 'streamingAddress' | 'kubeletAddress', fallback: string, where: string): { host: string; port: number } {
  const v = t[key] ?? fallback;
  const m = typeof v === 'string' ? /^(\d{1,3}(?:\.\d{1,3}){3}|\[[0-9a-fA-F:]+\]|localhost):(\d{1,5})$/.exec(v) : null;
  if (!m || Number(m[2]) > 65535) throw bad(`must be host:port such as ${fallback}, got ${JSON.stringify(v)}`, { field: `${where}: ${key}` });
  return { host: m[1]!.replace(/^\[|\]$/g, ''), port: Number(m[2]) };
}

function snapshotterOf(t: Table, where: string): AgentConfig['snapshotter'] {
  const v = t.snapshotter ?? 'auto';
  if (v !== 'auto' && v !== 'overlayfs' && v !== 'copy') throw bad(`must be auto, overlayfs or copy; got ${JSON.stringify(v)}`, { field: `${where}: snapshotter` });
  return v;
}

function registriesOf(t: Table, where: string): AgentConfig['registries'] {
  const v = t.registries;
  if (v === undefined || v === null) return {};
  if (typeof v !== 'object' || Array.isArray(v)) throw bad('must be a mapping of registry host to settings', { field: `${where}: registries` });
  const out: AgentConfig['registries'] = {};
  for (const [host, raw] of Object.entries(v as Table)) {
    const field = `${where}: registries.${host}`;
    if (!/^[a-zA-Z0-9.-]+(:\d+)?$|^\[[0-9a-fA-F:]+\](:\d+)?$/.test(host)) throw bad('is not a registry host[:port]', { field });
    if (raw === null || typeof raw !== 'object' || Array.isArray(raw)) throw bad('must be a mapping with plainHttp and/or mirrors', { field });
    const r = raw as Table;
    for (const k of Object.keys(r)) if (k !== 'plainHttp' && k !== 'mirrors') throw bad(`unknown setting "${k}" (known: plainHttp, mirrors)`, { field: `${field}.${k}` });
    if (r.plainHttp !== undefined && typeof r.plainHttp !== 'boolean') throw bad('must be true or false', { field: `${field}.plainHttp` });
    const mirrors = r.mirrors ?? [];
    if (!Array.isArray(mirrors) || mirrors.some((m) => typeof m !== 'string' || !/^https?:\/\/[^/]+/.test(m))) {
      throw bad('must be a list of http:// or https:// endpoints', { field: `${field}.mirrors` });
    }
    out[host] = { ...(r.plainHttp !== undefined ? { plainHttp: r.plainHttp as boolean } : {}), mirrors: mirrors as string[] };
  }
  return out;
}

function kebab(key: string): string {
  return key.replace(/[A-Z]/g, (c) => `-${c.toLowerCase()}`);
}

/** Why an IPv4 pod CIDR is unusable, or undefined when it is fine. */
export function checkCidr(cidr: string): string | undefined {
  const m = /^(\d{1,3})\.(\d{1,3})\.(\d{1,3})\.(\d{1,3})\/(\d{1,2})$/.exec(cidr);
  if (!m) return 'must be an IPv4 CIDR such as 10.88.0.0/16';
  const octets = m.slice(1, 5).map(Number);
  if (octets.some((o) => o > 255)) return 'has an octet above 255';
  const prefix = Number(m[5]);
  // Room for a gateway and at least a few pods; /8 is already 16 million addresses.
  if (prefix < 8 || prefix > 28) return 'must have a prefix length between 8 and 28';
  const addr = octets.reduce((a, o) => a * 256 + o, 0);
  const hostBits = addr % 2 ** (32 - prefix);
  if (hostBits !== 0) return `has host bits set (the network is ${ipv4(addr - hostBits)}/${prefix})`;
  return undefined;
}

function ipv4(n: number): string {
  return [24, 16, 8, 0].map((s) => Math.floor(n / 2 ** s) % 256).join('.');
}

function exists(p: string): boolean {
  try {
    statSync(p);
    return true;
  } catch {
    return false;
  }
}
