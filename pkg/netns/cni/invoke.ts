import { readFile } from 'node:fs/promises';
import { join } from 'node:path';

import { internal, invalidArgument } from '../../errdefs/errors.js';
import { runTool } from '../exec_tool.js';

// CNI plugin invocation as the spec (v1.0) defines it, for the agent's own
// conflist: each plugin is run with CNI_* in the environment and its network
// configuration on stdin; ADD runs the list in order, each plugin getting
// the previous result as prevResult; DEL runs it in reverse with the result
// ADD gave; capabilities (portMappings) are handed in runtimeConfig.

export interface PortMapping {
  hostPort: number;
  containerPort: number;
  protocol: 'tcp' | 'udp' | 'sctp';
  hostIP?: string;
}

export interface CniResult {
  cniVersion: string;
  interfaces?: Array<{ name: string; mac?: string; sandbox?: string }>;
  ips?: Array<{ address: string; gateway?: string; interface?: number }>;
  routes?: unknown[];
  dns?: unknown;
}

export interface AttachmentArgs {
  containerId: string;
  netns: string;
  ifName: string;
  /** CNI_ARGS, e.g. K8S_POD_NAMESPACE, K8S_POD_NAME. */
  args: Record<string, string>;
  portMappings: PortMapping[];
}

interface PluginConf {
  type: string;
  capabilities?: Record<string, boolean>;
  [k: string]: unknown;
}

interface Conflist {
  cniVersion: string;
  name: string;
  plugins: PluginConf[];
}

export class CniNetwork {
  private constructor(
    private readonly list: Conflist,
    private readonly binDir: string,
    private readonly env: NodeJS.ProcessEnv,
  ) {}

  static async load(conflistPath: string, binDir: string, env: NodeJS.ProcessEnv = process.env): Promise<CniNetwork> {
    const list = JSON.parse(await readFile(conflistPath, 'utf8')) as Conflist;
    if (!Array.isArray(list.plugins) || list.plugins.length === 0) throw invalidArgument(`${conflistPath} names no plugins`, { field: 'cni' });
    return new CniNetwork(list, binDir, env);
  }

  get name(): string {
    return this.list.name;
  }

  /**
   * The plugins an attachment runs through. A plugin that is in the list only
   * for a capability (portmap: portMappings) has nothing to do for a pod that
   * does not use it, and is skipped on ADD, CHECK and DEL alike: portmap costs
   * an exec and its iptables runs on every pod start and stop otherwise.
   */
  private pluginsFor(a: AttachmentArgs): PluginConf[] {
    return this.list.plugins.filter((p) => !(p.type === 'portmap' && a.portMappings.length === 0));
  }

  /** ADD through the whole list; on a failure midway the plugins already run are deleted again. */
  async add(a: AttachmentArgs): Promise<CniResult> {
    let prev: CniResult | undefined;
    const done: PluginConf[] = [];
    try {
      for (const p of this.pluginsFor(a)) {
        prev = (await this.exec('ADD', p, a, prev)) ?? prev;
        done.push(p);
      }
    } catch (e: unknown) {
      for (const p of done.reverse()) await this.exec('DEL', p, a, prev).catch(() => undefined);
      throw e;
    }
    if (!prev) throw internal('the CNI plugins returned no result', { field: 'cni' });
    return prev;
  }

  /** DEL through the list in reverse; plugins treat missing state as success (spec). */
  async del(a: AttachmentArgs, prevResult: CniResult | undefined): Promise<void> {
    const errors: string[] = [];
    for (const p of [...this.pluginsFor(a)].reverse()) {
      try {
        await this.exec('DEL', p, a, prevResult);
      } catch (e: unknown) {
        errors.push((e as Error).message);
      }
    }
    if (errors.length > 0) throw internal(`CNI DEL failed: ${errors.join('; ')}`, { field: 'cni' });
  }

  /**
   * CHECK through the list in order (recovery: is the pod's network still
   * what ADD made?). Not portmap's: Debian's portmap checks the ip6tables
   * chains too, which it never makes for an IPv4-only pod, so its CHECK fails
   * every pod with a host port (measured). The DNAT rules are portmap's own
   * and stay; the host's side of the port is rootlesskit's, which outlives
   * the agent.
   */
  async check(a: AttachmentArgs, prevResult: CniResult): Promise<void> {
    for (const p of this.pluginsFor(a).filter((x) => x.type !== 'portmap')) await this.exec('CHECK', p, a, prevResult);
  }

  /** The loopback plugin on "lo", outside the list (it belongs to no network). */
  async loopback(command: 'ADD' | 'DEL', a: Omit<AttachmentArgs, 'ifName' | 'portMappings'>): Promise<void> {
    await this.exec(command, { type: 'loopback' }, { ...a, ifName: 'lo', portMappings: [] }, undefined, { cniVersion: this.list.cniVersion, name: 'cni-loopback' });
  }

  private async exec(
    command: 'ADD' | 'DEL' | 'CHECK',
    plugin: PluginConf,
    a: AttachmentArgs,
    prevResult: CniResult | undefined,
    listOverride?: { cniVersion: string; name: string },
  ): Promise<CniResult | undefined> {
    const conf: Record<string, unknown> = { ...plugin, cniVersion: listOverride?.cniVersion ?? this.list.cniVersion, name: listOverride?.name ?? this.list.name };
    delete conf.capabilities;
    if (plugin.capabilities?.portMappings && a.portMappings.length > 0) conf.runtimeConfig = { portMappings: a.portMappings };
    if (prevResult) conf.prevResult = prevResult;
    const env: NodeJS.ProcessEnv = {
      ...this.env,
      CNI_COMMAND: command,
      CNI_CONTAINERID: a.containerId,
      CNI_NETNS: a.netns,
      CNI_IFNAME: a.ifName,
      CNI_PATH: this.binDir,
      CNI_ARGS: Object.entries({ IgnoreUnknown: '1', ...a.args })
        .map(([k, v]) => `${k}=${v}`)
        .join(';'),
    };
    const r = await runTool(join(this.binDir, plugin.type), [], { input: JSON.stringify(conf), env, timeoutMs: 60000 });
    if (r.code !== 0) {
      let msg = r.stderr.trim();
      try {
        const e = JSON.parse(r.stdout) as { code?: number; msg?: string; details?: string };
        msg = `${e.msg ?? ''}${e.details ? `: ${e.details}` : ''} (CNI error ${e.code ?? '?'})`;
      } catch {
        // Not a CNI error object; stderr says it.
      }
      throw internal(`CNI ${command} with the ${plugin.type} plugin failed: ${msg || `exit code ${r.code}`}`, { field: 'cni' });
    }
    if (command !== 'ADD' || r.stdout.trim() === '') return undefined;
    return JSON.parse(r.stdout) as CniResult;
  }
}
