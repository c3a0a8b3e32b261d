import { readFileSync } from 'node:fs';
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';

import type { Registry } from 'prom-client';

import { criCall, criClients, type CriClients } from '../../proto/client.js';
import { type MetricsServer, sharedExposition } from '../../pkg/metrics/server.js';
import { cadvisorExposition } from '../../pkg/node/kubelet_metrics.js';
import { nodeMetrics } from '../../pkg/node/metrics.js';
import { failedPrecondition } from '../../pkg/errdefs/errors.js';
import type { Logger } from '../../pkg/log/logger.js';
import { enterArgv, type NodeNamespace } from '../../pkg/netns/node_namespace.js';
import { gatherHostFacts } from '../../pkg/node/host_facts.js';
import type { HostFacts } from '../../pkg/node/node_object.js';
import { PodManager } from '../../pkg/node/pod_manager.js';
import { PodConfig } from '../../pkg/node/pod_config.js';
import { parseResolvConf } from '../../pkg/node/pod_dns.js';
import { combinedProber, netProber } from '../../pkg/node/prober_net.js';
import { execProber } from '../../pkg/node/prober_exec.js';
import { type ClusterObjects, memoryVolumeRoot } from '../../pkg/node/pod_volumes.js';
import type { ApiClusterObjects } from '../../pkg/node/cluster_objects.js';
import { StaticPods } from '../../pkg/node/static_pods.js';
import { ContainerLogManager } from '../../pkg/node/container_log_manager.js';
import { agentVersion } from './version.js';
import { type AgentConfig, pathsOf } from './config.js';

// The node half once the runtime answers: the pod worker on the runtime's CRI
// socket, fed by the static pod folder and, given a kubeconfig, by the API
// server (Node, Lease, the pods bound to the node, their statuses, events and
// mirror pods). The cluster modules are loaded only for a node that joins one.

/** The Kubernetes release this node speaks for (Node.status.nodeInfo.kubeletVersion). */
const kubernetesVersion = (JSON.parse(readFileSync(new URL('../../../versions.json', import.meta.url), 'utf8')) as { kubernetes: string }).kubernetes;

/** CRI Status as Node's Ready condition wants it: both runtime conditions true, else why not. */
async function runtimeReady(cri: CriClients): Promise<{ ready: boolean; message: string }> {
  try {
    const s = await criCall<{ status?: { conditions?: Array<{ type: string; status: boolean; reason: string; message: string }> } }>(cri, 'runtime', 'Status', {});
    const bad = (s.status?.conditions ?? []).filter((c) => (c.type === 'RuntimeReady' || c.type === 'NetworkReady') && !c.status);
    return bad.length === 0 ? { ready: true, message: '' } : { ready: false, message: bad.map((c) => `${c.type}=false reason:${c.reason} message:${c.message}`).join('; ') };
  } catch (e: unknown) {
    return { ready: false, message: `the CRI runtime does not answer: ${(e as Error).message}` };
  }
}

export interface NodeHalfOptions {
  /** The node's own Prometheus exposition (the agent's and the runtime's), for the kubelet API's /metrics. */
  metrics: () => Promise<{ contentType: string; body: string }>;
  /** The node half's registry (kubelet_* metrics) and the unauthenticated metrics server, which gains /metrics/cadvisor. */
  registry: Registry;
  metricsServer: MetricsServer;
}

export async function startNodeHalf(c: AgentConfig, log: Logger, ns: NodeNamespace, o: NodeHalfOptions): Promise<() => Promise<void>> {
  const p = pathsOf(c);
  const cri = criClients(c.criSocket);
  const cleanup: Array<() => Promise<void>> = [async () => cri.close()];
  const unwind = async (): Promise<void> => {
    for (const f of cleanup.reverse()) await f().catch(() => {});
  };
  try {
    const first = await gatherHostFacts(c.dataDir);
    const nodeIP = c.cluster.nodeIP ?? first.internalIPs[0] ?? '';
    const facts = async (): Promise<HostFacts> => {
      const h = await gatherHostFacts(c.dataDir);
      // One InternalIP, as kubelet reports: --node-ip, else the host's first (the API server refuses a type's duplicates).
      return { ...h, internalIPs: nodeIP ? [nodeIP] : [] };
    };
    const nodeName = c.cluster.nodeName;

    let podConfig: PodConfig | undefined;
    // Set once the API client is made, before any pod is synced.
    let objects: ApiClusterObjects | undefined;
    // The runtime's name and version: containerIDs are <name>://<id>, the Node's runtime is <name>://<version>.
    const version = await criCall<{ runtimeName: string; runtimeVersion: string }>(cri, 'runtime', 'Version', { version: 'v1' }).catch(() => undefined);
    const runtimeName = version?.runtimeName || 'usernode';
    // Probes: exec through the CRI; the network kinds from one worker inside the node namespace, where pod IPs are.
    const net = netProber({ enter: (argv) => enterArgv(c.tools.nsenter ?? 'nsenter', ns, argv), log: log.child('prober') });
    cleanup.push(() => net.close());
    const podLog = log.child('pods');
    // kubelet's pods folder: per pod uid, its volumes and termination message files.
    const podsDir = join(c.dataDir, 'pods', 'volumes');
    const metrics = nodeMetrics(o.registry, { nodeName });
    const pods = new PodManager({
      cri,
      log: podLog,
      dns: { clusterDNS: c.cluster.clusterDNS, clusterDomain: c.cluster.clusterDomain, host: parseResolvConf(await readFile('/etc/resolv.conf', 'utf8').catch(() => '')) },
      logRoot: p.podLogsDir,
      podsDir,
      nodeName,
      hostIP: nodeIP,
      runtimeName,
      memoryCapacityBytes: first.memoryBytes,
      prober: combinedProber({ exec: execProber(cri), net }),
      uid: c.uid,
      volumeRoot: podsDir,
      memoryVolumeRoot: await memoryVolumeRoot(c.runtimeDir, c.uid),
      allocatable: { cpu: String(first.cpus), memory: String(first.memoryBytes), 'ephemeral-storage': String(first.ephemeralStorageBytes) },
      asNodeRoot: (argv: string[]) => enterArgv(c.tools.nsenter ?? 'nsenter', ns, argv),
      ...(c.cluster.kubeconfig !== undefined
        ? {
            cluster: {
              configMap: (namespace, name) => objects!.configMap(namespace, name),
              secret: (namespace, name) => objects!.secret(namespace, name),
              serviceAccountToken: (namespace, sa, r) => objects!.serviceAccountToken(namespace, sa, r),
              services: (namespace) => objects!.services(namespace),
            } satisfies ClusterObjects,
          }
        : {}),
      onStatus: (pod, status) => podConfig?.onStatus(pod, status as unknown as Record<string, unknown>),
      onEvent: (pod, e) => {
        // The log has them too: without an API server it is the only place (kubelet's `kubectl describe` view).
        podLog[e.type === 'Warning' ? 'warn' : 'info']('pod event', { pod: `${pod.namespace}/${pod.name}`, reason: e.reason, container: e.container ?? '', message: e.message });
        podConfig?.onEvent(pod, e);
      },
      onTerminated: (pod) => void podConfig?.onTerminated(pod),
      onCriCall: metrics.criCall,
      onPodRunning: (_pod, firstSeenMs, nowMs) => metrics.podRunning(firstSeenMs, nowMs),
    });
    metrics.readPods(() => pods.statuses().values());
    // One ListPodSandboxMetrics per second at most, whoever scrapes (both ports, several Prometheus servers).
    const cadvisor = sharedExposition(() => cadvisorExposition(cri));
    o.metricsServer.route('/metrics/cadvisor', cadvisor);

    const api = c.cluster.kubeconfig !== undefined ? await (await import('../../pkg/node/kube_api.js')).loadKubeApi(c.cluster.kubeconfig) : undefined;

    // The kubelet API, before the Node is registered: the Node names its port.
    let kubeletPort = 0;
    if (c.cluster.kubeletAddress) {
      const { serveKubeletApi, clusterAuth } = await import('../../pkg/node/kubelet_server.js');
      const { SummaryProvider } = await import('../../pkg/node/kubelet_stats.js');
      const { resourceExposition } = await import('../../pkg/node/kubelet_metrics.js');
      const summary = new SummaryProvider({ cri, nodeName, rootDir: c.dataDir });
      const text = 'text/plain; version=0.0.4; charset=utf-8';
      const server = await serveKubeletApi({
        host: c.cluster.kubeletAddress.host,
        port: c.cluster.kubeletAddress.port,
        tls: { ...(c.cluster.tlsCertFile ? { certFile: c.cluster.tlsCertFile, keyFile: c.cluster.tlsKeyFile! } : {}), pkiDir: join(c.dataDir, 'pki') },
        ...(c.cluster.clientCAFile ? { clientCAFile: c.cluster.clientCAFile } : {}),
        ...(api ? { auth: clusterAuth(api.kc) } : {}),
        anonymous: c.cluster.anonymousAuth,
        maxConnections: c.cluster.kubeletMaxConnections,
        nodeName,
        cri,
        pods: () => podConfig?.pods() ?? [],
        metrics: {
          node: o.metrics,
          cadvisor: async () => ({ contentType: text, body: await cadvisor() }),
          resource: async () => ({ contentType: text, body: resourceExposition((await summary.summary()) as never) }),
        },
        log: log.child('kubelet-api'),
      }).catch((e: unknown) => {
        throw failedPrecondition(`cannot serve the kubelet API on ${c.cluster.kubeletAddress!.host}:${c.cluster.kubeletAddress!.port}: ${(e as Error).message}`, { field: 'kubeletAddress' });
      });
      cleanup.push(() => server.close());
      kubeletPort = server.port;
    }

    if (api) {
      if (!version) throw new Error('the CRI runtime does not answer Version: the Node cannot name its container runtime');
      const { NodeController } = await import('../../pkg/node/node_controller.js');
      const { podInformer } = await import('../../pkg/node/informer.js');
      const { PodStatusWriter } = await import('../../pkg/node/pod_status_writer.js');
      const { EventRecorder } = await import('../../pkg/node/event_recorder.js');
      objects = (await import('../../pkg/node/cluster_objects.js')).clusterObjects(api, log.child('cluster-objects'));
      const made = objects;
      cleanup.push(() => made.close());
      const nodes = new NodeController({
        api,
        node: {
          name: nodeName,
          labels: c.cluster.nodeLabels,
          taints: c.cluster.taints,
          reserved: { cpuMillis: 0, memoryBytes: 0 },
          maxPods: c.cluster.maxPods,
          runtimeVersion: `${runtimeName}://${version.runtimeVersion}`,
          kubeletVersion: `${kubernetesVersion}-usernode.${agentVersion}`,
          kubeletPort,
        },
        facts,
        runtimeReady: () => runtimeReady(cri),
        log: log.child('node'),
      });
      const stop = new AbortController();
      const nodeRun = nodes.run(stop.signal);
      cleanup.push(async () => {
        stop.abort();
        await nodeRun;
      });
      const events = new EventRecorder(api, nodeName, log.child('events'));
      const statuses = new PodStatusWriter(api, log.child('pod-status'));
      cleanup.push(() => statuses.drain(2000));
      podConfig = new PodConfig({ nodeName, log: log.child('pod-config'), worker: pods, cluster: { api, statuses, events, nodeUid: () => nodes.uid } });
      const informer = podInformer({ api, nodeName, log: log.child('pod-informer'), onPods: (list) => podConfig!.setApi(list) });
      informer.start();
      void nodes.ready.then(() => podConfig!.refresh());
      cleanup.push(() => informer.stop());
      log.info('joining the cluster', { server: api.server, node: nodeName });
      // Which release the server is, beside the range this node supports (a warning outside it, never a refusal).
      void (await import('../../pkg/node/apiserver_version.js')).logServerVersion(api, log.child('apiserver'));
    } else {
      podConfig = new PodConfig({ nodeName, log: log.child('pod-config'), worker: pods });
    }
    const config = podConfig;
    const manifests = new StaticPods(c.staticPodPath, (list) => config.setStatic(list), log.child('static-pods'));
    await manifests.start();
    cleanup.push(() => manifests.stop());
    pods.start();
    cleanup.push(() => pods.stop());
    // kubelet's container log manager: rotation by size and count, through the runtime's ReopenContainerLog.
    const logs = new ContainerLogManager({
      runtime: {
        runningContainers: async () =>
          (await criCall<{ containers: Array<{ id: string; state: string }> }>(cri, 'runtime', 'ListContainers', { filter: { state: { state: 'CONTAINER_RUNNING' } } })).containers
            .filter((x) => x.state === 'CONTAINER_RUNNING')
            .map((x) => x.id),
        logPath: async (id) => (await criCall<{ status?: { logPath?: string } }>(cri, 'runtime', 'ContainerStatus', { containerId: id })).status?.logPath ?? '',
        reopenLog: async (id) => void (await criCall(cri, 'runtime', 'ReopenContainerLog', { containerId: id })),
      },
      policy: c.containerLogs,
      log: log.child('container-logs'),
    });
    const stopLogs = new AbortController();
    const logsRun = logs.run(stopLogs.signal);
    cleanup.push(async () => {
      stopLogs.abort();
      await logsRun;
    });
    log.info('static pods from', { dir: c.staticPodPath });
    return unwind;
  } catch (e: unknown) {
    await unwind();
    throw e;
  }
}
