import { access, constants, mkdir, readFile } from 'node:fs/promises';
import { join } from 'node:path';

import { writeFileDurable } from '../../store/durable_file.js';

// The pod network's CNI configuration, written by the agent (the operator does
// not hand-write a conflist): bridge usernode0 with host-local IPAM on the pod
// CIDR, portmap for hostPort, and the plugin binaries it needs from Debian's
// containernetworking-plugins. host-local keeps its allocations under the
// agent's state because /var/lib/cni is root's (DESIGN.md, host facts).

export const requiredPlugins = ['bridge', 'host-local', 'loopback', 'portmap'] as const;

export interface PodNetworkOptions {
  networkName: string;
  bridge: string;
  podCIDR: string;
  mtu: number;
  ipamDataDir: string;
}

export function buildConflist(o: PodNetworkOptions): object {
  return {
    cniVersion: '1.0.0',
    name: o.networkName,
    plugins: [
      {
        type: 'bridge',
        bridge: o.bridge,
        isGateway: true,
        // Masquerading is one chain for the whole pod CIDR (pod_egress.ts), not nine iptables runs per pod.
        ipMasq: false,
        hairpinMode: true,
        mtu: o.mtu,
        ipam: {
          type: 'host-local',
          dataDir: o.ipamDataDir,
          ranges: [[{ subnet: o.podCIDR }]],
          routes: [{ dst: '0.0.0.0/0' }],
        },
      },
      { type: 'portmap', capabilities: { portMappings: true } },
    ],
  };
}

/** Writes the conflist atomically; returns its path. */
export async function writeConflist(confDir: string, o: PodNetworkOptions): Promise<string> {
  await mkdir(confDir, { recursive: true, mode: 0o700 });
  const path = join(confDir, `10-${o.networkName}.conflist`);
  const text = JSON.stringify(buildConflist(o), null, 2) + '\n';
  await writeFileDurable(path, text);
  return path;
}

export interface PluginCheck {
  ready: boolean;
  missing: string[];
  message: string;
}

/** Are the plugin binaries the conflist names executable, and is the conflist readable? */
export async function checkPodNetwork(binDir: string, conflistPath: string): Promise<PluginCheck> {
  const missing: string[] = [];
  for (const p of requiredPlugins) {
    try {
      await access(join(binDir, p), constants.X_OK);
    } catch {
      missing.push(join(binDir, p));
    }
  }
  let confError = '';
  try {
    JSON.parse(await readFile(conflistPath, 'utf8'));
  } catch (e: unknown) {
    confError = `cni config ${conflistPath} unreadable: ${(e as Error).message}`;
  }
  if (missing.length > 0 || confError) {
    const parts = [];
    if (missing.length > 0) parts.push(`missing CNI plugins: ${missing.join(', ')} (apt-get install containernetworking-plugins)`);
    if (confError) parts.push(confError);
    return { ready: false, missing, message: `cni plugin not initialized: ${parts.join('; ')}` };
  }
  return { ready: true, missing, message: '' };
}
