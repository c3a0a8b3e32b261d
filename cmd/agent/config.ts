import { accessSync, constants, readFileSync, statSync } from 'node:fs';
import { homedir, userInfo } from 'node:os';
import { delimiter, isAbsolute, join } from 'node:path';

import { parse as parseYaml, YAMLParseError } from 'yaml';

import { invalidArgument } from '../../pkg/errdefs/errors.js';
import { isLogLevel, type LogLevel } from '../../pkg/log/logger.js';
import type { ToolPaths } from '../../pkg/node/preflight.js';

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
}

/** Tools the agent uses but `run` does not require: features that need one say so when it is missing. */
const helperTools = ['sleep', 'mount', 'umount', 'mknod', 'mkfifo', 'setfattr', 'cp', 'unshare', 'socat', 'script', 'stty'] as const;
const toolKeys = ['rootlesskit', 'slirp4netns', 'newuidmap', 'newgidmap', 'runc', 'conmon', 'catatonit', 'nsenter', 'iptables', ...helperTools] as const;
const topKeys = ['criSocket', 'dataDir', 'runtimeDir', 'logLevel', 'network', 'tools', 'registries', 'snapshotter', 'metricsAddress', 'streamingAddress', 'staticPodPath'] as const;
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

function addressOf(t: Table, key: 'metricsAddress' | 'streamingAddress', fallback: string, where: string): { host: string; port: number } {
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
