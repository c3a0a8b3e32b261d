import { randomBytes } from 'node:crypto';
import { rm } from 'node:fs/promises';
import { join } from 'node:path';

import type { RunPodSandboxRequest__Output, RunPodSandboxResponse } from '../../proto/types.js';
import { invalidArgument, messageOf } from '../errdefs/errors.js';
import type { CniResult, PortMapping } from '../netns/cni/invoke.js';
import { writePodFiles } from '../sandbox/pod_files.js';
import { nameKey, type SandboxRecord } from '../sandbox/sandbox_store.js';
import { CleanupStack } from './cleanup_stack.js';
import { podAttachment } from './pod_network.js';
import { podUserNamespace } from './pod_userns.js';
import type { CriContext } from './context.js';
import { checkHostname, checkPodSandboxConfig } from './validate.js';

// RunPodSandbox: a pod is its namespaces (network, IPC, UTS, bind-mounted, no
// pause process), its network attachment on the usernode0 bridge (CNI:
// loopback, bridge + host-local, portmap), and its hosts/resolv.conf files.
// Every step pushes its undo; a failure leaves no netns, veth, lease or file.
// The record is the commit point, written last: a crash before it leaves
// only things named by the pod's id (netns/<id>, pods/files/<id>, the CNI
// container id of the lease and NAT rules, catatonit's environment, a host
// port forwarding to the leased address), which the next start releases
// (recover.ts).

export async function runPodSandbox(req: RunPodSandboxRequest__Output, ctx: CriContext): Promise<RunPodSandboxResponse> {
  const config = req.config;
  if (!config) throw invalidArgument('a pod sandbox config is required', { field: 'config' });
  checkPodSandboxConfig(config);
  const md = config.metadata;
  if (req.runtimeHandler !== '' && req.runtimeHandler !== 'runc') {
    throw invalidArgument(`unknown runtime handler "${req.runtimeHandler}" (usernode has "" and "runc")`, { field: 'runtime_handler' });
  }
  const metadata = { name: md.name, uid: md.uid, namespace: md.namespace, attempt: md.attempt };
  const pods = ctx.pods;

  const nsOpts = config.linux?.securityContext?.namespaceOptions;
  const hostNetwork = nsOpts?.network === 'NODE';
  const userns = podUserNamespace(nsOpts, pods.nodeIds);
  const portMappings: PortMapping[] = (config.portMappings ?? []).map((p, i) => {
    if (!(p.containerPort > 0 && p.containerPort <= 65535)) throw invalidArgument(`container_port ${p.containerPort} is out of range 1-65535`, { field: `config.port_mappings[${i}].container_port` });
    if (!(p.hostPort >= 0 && p.hostPort <= 65535)) throw invalidArgument(`host_port ${p.hostPort} is out of range 0-65535`, { field: `config.port_mappings[${i}].host_port` });
    const protocol = (p.protocol ?? 'TCP').toLowerCase() as PortMapping['protocol'];
    return { hostPort: p.hostPort, containerPort: p.containerPort, protocol, ...(p.hostIp ? { hostIP: p.hostIp } : {}) };
  });
  // No hostname given: the node's, as containerd does (kubelet always sends one).
  const hostname = config.hostname || pods.nodeHostname;
  checkHostname(hostname);

  const id = randomBytes(32).toString('hex');
  // Before the first await: of two requests for one name, one gets it, the other ALREADY_EXISTS.
  pods.store.reserveName(nameKey(metadata), id);
  const log = ctx.log.child('sandbox');
  const undo = new CleanupStack();
  undo.push('name reservation', async () => pods.store.releaseName(nameKey(metadata), id));
  try {
    const ns = userns
      ? await pods.namespaces.createInUserNamespace(id, hostname, userns)
      : await pods.namespaces.create(id, hostname, { network: !hostNetwork, ipc: nsOpts?.ipc !== 'NODE' });
    undo.push('pod namespaces', () => pods.namespaces.remove(id));
    ctx.crashPoint?.('run_pod_sandbox.namespaces');
    const pidNamespace = nsOpts?.pid === 'POD' ? await pods.namespaces.startPidNamespace(ns.user, id) : undefined;
    if (pidNamespace) undo.push('pod process namespace', () => pods.namespaces.stopPidNamespace(pidNamespace));
    if (pidNamespace) ctx.crashPoint?.('run_pod_sandbox.pid_namespace');

    let network: SandboxRecord['network'];
    if (ns.net) {
      const attach = podAttachment(id, metadata, ns.net, portMappings);
      await pods.cni.loopback('ADD', attach);
      ctx.crashPoint?.('run_pod_sandbox.loopback');
      const result: CniResult = await pods.cni.add(attach);
      undo.push('pod network', () => pods.cni.del(attach, result));
      ctx.crashPoint?.('run_pod_sandbox.cni_add');
      const ips = (result.ips ?? []).map((x) => x.address.split('/')[0]!);
      if (ips.length === 0) throw invalidArgument('the CNI plugins gave the pod no IP address', { field: 'cni' });
      // Each host port: on the user's host, forwarded to the pod's address inside the node.
      const hostPortForwards: number[] = [];
      for (const m of attach.portMappings) {
        const f = await pods.ports.add({ protocol: m.protocol, hostIP: m.hostIP ?? '0.0.0.0', hostPort: m.hostPort, childIP: ips[0]!, childPort: m.containerPort });
        hostPortForwards.push(f.id);
        undo.push(`host port ${m.hostPort}`, () => pods.ports.remove(f.id));
        ctx.crashPoint?.('run_pod_sandbox.host_port');
      }
      network = { ip: ips[0]!, additionalIps: ips.slice(1), cniResult: result, hostPortForwards };
    }

    const dir = join(pods.podsDir, id);
    const dns = config.dnsConfig ? { servers: config.dnsConfig.servers, searches: config.dnsConfig.searches, options: config.dnsConfig.options } : undefined;
    undo.push('pod files', () => rm(dir, { recursive: true, force: true }));
    const files = await writePodFiles(dir, hostname, network?.ip, dns, pods.nodeResolvConf);
    ctx.crashPoint?.('run_pod_sandbox.files');

    const record: SandboxRecord = {
      id,
      metadata,
      state: 'SANDBOX_READY',
      createdAt: String(BigInt(Date.now()) * 1000000n + process.hrtime.bigint() % 1000000n),
      labels: config.labels ?? {},
      annotations: config.annotations ?? {},
      runtimeHandler: req.runtimeHandler,
      hostname,
      hostNetwork,
      namespaces: ns,
      ...(userns ? { userns } : {}),
      ...(pidNamespace ? { pidNamespace } : {}),
      ...(network ? { network } : {}),
      files,
      logDirectory: config.logDirectory,
      portMappings,
      config,
    };
    await pods.store.add(record);
    undo.release();
    ctx.crashPoint?.('run_pod_sandbox.record');
    log.info('pod sandbox ready', { id: id.slice(0, 12), pod: `${md.namespace}/${md.name}`, ip: network?.ip ?? 'host' });
    return { podSandboxId: id };
  } catch (e: unknown) {
    await undo.unwind((what, err) => log.error('undo failed', { what, error: messageOf(err) }));
    throw e;
  }
}
