import { readFileSync } from 'node:fs';
import { access, constants, mkdir, readFile, writeFile, rename } from 'node:fs/promises';
import { isIP } from 'node:net';

import { failedPrecondition } from '../../pkg/errdefs/errors.js';
import type { Logger } from '../../pkg/log/logger.js';
import { runTool } from '../../pkg/netns/exec_tool.js';
import { enterArgv, type NodeNamespace } from '../../pkg/netns/node_namespace.js';
import { isAlive, terminate } from '../../pkg/netns/procfs.js';
import { RootlesskitPorts } from '../../pkg/netns/rootlesskit/ports.js';
import { gatherHostFacts } from '../../pkg/node/host_facts.js';
import { type KubeletModeSettings, kubeletConfigurationYaml, kubeletContainerLogsDir, kubeletFlags, kubeletPodLogsDir, kubeletRootDir } from '../../pkg/node/kubelet_config.js';
import { KubeletSupervisor } from '../../pkg/node/kubelet_supervisor.js';
import { type AgentConfig, pathsOf, toolPath } from './config.js';
import { readPid } from './lock.js';

// Kubelet mode (`usernode run --kubelet PATH`): the upstream kubelet, not the
// agent's node half, registers the node and drives its pods, through the
// runtime's CRI socket, from inside the node namespace — the runtime's mount
// namespace, where runc bind-mounts the volume folders kubelet makes, and its
// network namespace, where pod IPs and the streaming server are. What the
// node namespace must give it first:
//  - /var/lib/kubelet, /var/log/pods and /var/log/containers, bound from the
//    user's data folder (so pods' volumes and logs outlive the namespace) onto
//    the copied-up /var/lib and /var/log;
//  - the node IP on an interface: kubelet refuses a --node-ip it cannot find
//    among its interfaces, and the node namespace has only lo and tap0 (the
//    address goes on lo, without its local route, and tap0 accepts packets
//    from it: traffic to the host's address still reaches the host);
//  - the kubelet API's port forwarded from the host, where the apiserver dials it.

export async function startKubeletMode(c: AgentConfig, log: Logger, ns: NodeNamespace, env: NodeJS.ProcessEnv): Promise<() => Promise<void>> {
  const p = pathsOf(c);
  const kubelet = c.cluster.kubelet!;
  const kubeconfig = c.cluster.kubeconfig!;
  const address = c.cluster.kubeletAddress ?? { host: '0.0.0.0', port: 10250 };
  await access(kubelet, constants.X_OK).catch(() => {
    throw failedPrecondition(`--kubelet ${kubelet} is not an executable file`, { field: '--kubelet' });
  });
  const nodeIP = c.cluster.nodeIP ?? (await gatherHostFacts(c.dataDir)).internalIPs[0];
  if (nodeIP === undefined) throw failedPrecondition('the host has no IPv4 address besides loopback for the Node; give --node-ip', { field: '--node-ip' });
  if (isIP(nodeIP) !== 4 || nodeIP.startsWith('127.')) {
    throw failedPrecondition(`--node-ip ${nodeIP}: kubelet mode needs one of the host's IPv4 addresses (kubelet refuses loopback; the apiserver dials it)`, { field: '--node-ip' });
  }
  const inNode = async (argv: string[], what: string): Promise<string> => {
    const [file, ...args] = enterArgv(c.tools.nsenter ?? 'nsenter', ns, argv);
    const r = await runTool(file!, args, { env: { ...env, PATH: toolPath(env.PATH) }, timeoutMs: 20000 });
    if (r.code !== 0) throw failedPrecondition(`${what}: ${argv.join(' ')}: ${r.stderr.trim() || `exit code ${r.code}`}`);
    return r.stdout;
  };

  // kubelet's folders, bound where it insists on them; a node namespace made
  // without kubelet mode has no writable /var/lib and must be made again.
  for (const d of [p.kubeletRoot, p.kubeletPodLogs, p.kubeletContainerLogs]) await mkdir(d, { recursive: true, mode: 0o700 });
  await inNode(['mkdir', '-p', kubeletRootDir, kubeletPodLogsDir, kubeletContainerLogsDir], 'making kubelet\'s folders in the node namespace').catch((e: unknown) => {
    throw failedPrecondition(`${(e as Error).message}\nthe node namespace was made without kubelet mode (no writable /var/lib and /var/log); run "usernode stop" and start again with --kubelet`, { field: '--kubelet' });
  });
  const mounted = mountPoints(await readFile(`/proc/${ns.holderPid}/mountinfo`, 'utf8'));
  const mount = c.tools.mount ?? '/bin/mount';
  for (const [from, to] of [[p.kubeletRoot, kubeletRootDir], [p.kubeletPodLogs, kubeletPodLogsDir], [p.kubeletContainerLogs, kubeletContainerLogsDir]] as const) {
    // Bound by an earlier agent into the same node namespace: kept, with the volumes kubelet mounted beneath.
    if (!mounted.has(to)) await inNode([mount, '--bind', from, to], `binding ${from} at ${to}`);
  }

  // The node IP on lo, and its local route removed: kubelet finds the address,
  // yet traffic to it (the host itself, maybe the apiserver) still leaves through
  // slirp4netns instead of staying in the node namespace.
  const ip = c.tools.ip ?? '/usr/sbin/ip';
  if (!(await inNode([ip, '-4', '-o', 'addr', 'show', 'dev', 'lo'], 'reading lo')).includes(` ${nodeIP}/32 `)) {
    await inNode([ip, 'addr', 'add', `${nodeIP}/32`, 'dev', 'lo'], `adding the node IP ${nodeIP} to the node namespace's lo`);
  }
  await inNode([ip, 'route', 'del', 'table', 'local', `${nodeIP}/32`, 'dev', 'lo'], 'removing the local route of the node IP').catch((e: unknown) => {
    if (!/No such process|Cannot find/i.test((e as Error).message)) throw e;
  });
  // The host's replies come from that address: without accept_local the kernel drops them as martians
  // (a source address of one's own interfaces), and kubelet never reaches an apiserver on this host.
  await inNode([c.tools.sysctl ?? '/usr/sbin/sysctl', '-w', 'net.ipv4.conf.tap0.accept_local=1'], 'accepting the host\'s replies from the node IP on tap0');

  // The kubelet API: listened on in the node namespace, forwarded from the host's address (the apiserver dials NodeIP:port).
  const ports = new RootlesskitPorts(ns.portApiSocket);
  for (const f of await ports.list()) {
    if (f.hostPort === address.port && f.childIP === '127.0.0.1' && f.childPort === address.port) await ports.remove(f.id).catch(() => undefined);
  }
  const forward = await ports.add({ protocol: 'tcp', hostIP: address.host, hostPort: address.port, childIP: '127.0.0.1', childPort: address.port }).catch((e: unknown) => {
    throw failedPrecondition(`cannot forward the kubelet API's port ${address.host}:${address.port} from the host: ${(e as Error).message}`, { field: '--kubelet-address' });
  });

  const settings: KubeletModeSettings = {
    kubeconfig,
    nodeName: c.cluster.nodeName,
    nodeIP,
    criSocket: c.criSocket,
    port: address.port,
    clientCAFile: c.cluster.clientCAFile,
    tlsCertFile: c.cluster.tlsCertFile,
    tlsKeyFile: c.cluster.tlsKeyFile,
    anonymousAuth: c.cluster.anonymousAuth,
    staticPodPath: c.staticPodPath,
    maxPods: c.cluster.maxPods,
    clusterDNS: c.cluster.clusterDNS,
    clusterDomain: c.cluster.clusterDomain,
    nodeLabels: c.cluster.nodeLabels,
    taints: c.cluster.taints,
    configPath: p.kubeletConfig,
    rootDir: kubeletRootDir,
    containerLogs: { maxSize: c.containerLogs.maxSize, maxFiles: c.containerLogs.maxFiles, monitorInterval: c.containerLogs.monitorInterval },
  };
  await mkdir(c.staticPodPath, { recursive: true });
  await writeFile(`${p.kubeletConfig}.tmp`, kubeletConfigurationYaml(settings), { mode: 0o600 });
  await rename(`${p.kubeletConfig}.tmp`, p.kubeletConfig);

  // A kubelet left by an agent that was killed outright still holds the node: one registrar per node.
  const orphan = await readPid(p.kubeletPid);
  if (orphan !== undefined && isAlive(orphan) && cmdlineOf(orphan).includes(`--config=${p.kubeletConfig}`)) {
    log.warn('stopping a kubelet left by an earlier agent', { pid: orphan });
    await terminate([orphan], 10000);
  }
  const argv = enterArgv(c.tools.nsenter ?? 'nsenter', ns, [kubelet, ...kubeletFlags(settings)]);
  const supervisor = new KubeletSupervisor({ argv, env: { ...env, PATH: toolPath(env.PATH) }, logFile: p.kubeletLog, pidFile: p.kubeletPid, log: log.child('kubelet') });
  const stop = new AbortController();
  const done = supervisor.run(stop.signal);
  log.info('kubelet mode: the upstream kubelet registers the node', { kubelet, node: c.cluster.nodeName, nodeIP, kubeletPort: address.port, config: p.kubeletConfig, log: p.kubeletLog });
  return async () => {
    stop.abort();
    await done;
    await ports.remove(forward.id).catch(() => undefined);
  };
}

/** Mount points as /proc/PID/mountinfo lists them (field 5, octal escapes decoded). */
function mountPoints(mountinfo: string): Set<string> {
  return new Set(
    mountinfo
      .split('\n')
      .map((l) => l.split(' ')[4])
      .filter((m): m is string => m !== undefined)
      .map((m) => m.replace(/\\([0-7]{3})/g, (_, o: string) => String.fromCharCode(parseInt(o, 8)))),
  );
}

function cmdlineOf(pid: number): string {
  try {
    return readFileSync(`/proc/${pid}/cmdline`, 'utf8').split('\0').join(' ');
  } catch {
    return '';
  }
}
