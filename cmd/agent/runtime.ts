import { readFileSync, rmSync } from 'node:fs';
import { access, constants, mkdir, readFile } from 'node:fs/promises';

import { hostname } from 'node:os';
import { join } from 'node:path';

import type { PodRuntime } from '../../pkg/cri/pods.js';
import { CriServer } from '../../pkg/cri/server.js';
import { CniNetwork } from '../../pkg/netns/cni/invoke.js';
import { PodNamespaces } from '../../pkg/netns/pod_namespaces.js';
import { RootlesskitPorts } from '../../pkg/netns/rootlesskit/ports.js';
import { runTool } from '../../pkg/netns/exec_tool.js';
import { SandboxStore } from '../../pkg/sandbox/sandbox_store.js';
import { movedAsideRecords } from '../../pkg/store/json_records.js';
import { ContainerStore } from '../../pkg/sandbox/container_store.js';
import { ConmonMonitor } from '../../pkg/sandbox/conmon.js';
import { RuncRuntime } from '../../pkg/sandbox/runc.js';
import { MountSources } from '../../pkg/sandbox/mount_sources.js';
import { ContainerRootfs } from '../../pkg/image/container_rootfs.js';
import type { ContainerRuntime } from '../../pkg/cri/containers.js';
import { type ContainerEvent, publishLifecycleEvents } from '../../pkg/cri/container_events.js';
import { EventBus } from '../../pkg/cri/event_bus.js';
import { ExitWatcher } from '../../pkg/cri/exit_watcher.js';
import { ContentStore } from '../../pkg/image/content_store.js';
import { ImageService } from '../../pkg/image/image_service.js';
import { ImageStore } from '../../pkg/image/image_store.js';
import { LayerStore } from '../../pkg/image/layer_store.js';
import { RegistryClient } from '../../pkg/image/registry_client.js';
import { chooseSnapshotter } from '../../pkg/image/snapshotter_probe.js';
import { UnpackPool } from '../../pkg/image/unpack_pool.js';
import { criMetrics } from '../../pkg/metrics/cri.js';
import { imageMetrics } from '../../pkg/metrics/image.js';
import { countUncaught, createRegistry } from '../../pkg/metrics/registry.js';
import { guardProcess } from '../../pkg/log/process_guard.js';
import { runtimeMetrics } from '../../pkg/metrics/runtime.js';
import { readNetDev } from '../../pkg/netns/net_dev.js';
import { serveMetrics } from '../../pkg/metrics/server.js';
import type { CriContext, RuntimeHealth } from '../../pkg/cri/context.js';
import { createLogger } from '../../pkg/log/logger.js';
import { checkPodNetwork, writeConflist } from '../../pkg/netns/cni/conflist.js';
import { ensurePodEgress } from '../../pkg/netns/pod_egress.js';
import type { NodeNamespace } from '../../pkg/netns/node_namespace.js';
import { detectCgroups } from '../../pkg/sandbox/cgroups.js';
import { prepareContainerCgroups } from '../../pkg/sandbox/cgroup_tree.js';
import { StatsCollector } from '../../pkg/sandbox/stats_collector.js';
import { runtimeDefaultSeccomp } from '../../pkg/sandbox/seccomp_default.js';
import { idCountOf } from '../../pkg/cri/pod_userns.js';
import { streamingHandlers } from '../../pkg/cri/stream_handlers.js';
import type { PortManager } from '../../pkg/netns/port_manager.js';
import { StreamingServer } from '../../pkg/streaming/server.js';
import { type AgentConfig, pathsOf } from './config.js';
import { agentVersion } from './version.js';
import { recoverRuntime } from '../../pkg/cri/recover.js';

// The runtime half: started by the node half through nsenter, it runs as uid 0
// of the node's user namespace, inside the node's network and mount
// namespaces, and serves the CRI. It holds no state of its own in memory that
// is not on disk, so it may be stopped and started at will.

interface Resolved {
  config: AgentConfig;
  nodeNamespace: NodeNamespace;
}

export async function runRuntime(resolvedPath: string): Promise<number> {
  const { config: c, nodeNamespace: ns } = JSON.parse(await readFile(resolvedPath, 'utf8')) as Resolved;
  const log = createLogger({ level: c.logLevel, component: 'runtime' });
  const uidMap = await readFile('/proc/self/uid_map', 'utf8');
  if (/^\s*0\s+0\s+4294967295\s*$/.test(uidMap)) {
    process.stderr.write('usernode runtime: must run inside the node namespace; start it with "usernode run"\n');
    return 1;
  }
  const p = pathsOf(c);
  const crashPoint = testCrashPoints(process.env, log);
  for (const d of [p.cniIpamDir, p.imagesDir, p.snapshotsDir]) await mkdir(d, { recursive: true, mode: 0o700 });
  const conflist = await writeConflist(p.cniConfDir, {
    networkName: c.network.networkName,
    bridge: c.network.bridge,
    podCIDR: c.network.podCIDR,
    mtu: c.network.mtu,
    ipamDataDir: p.cniIpamDir,
  });
  await ensurePodEgress(c.tools.iptables ?? '/usr/sbin/iptables', c.network.podCIDR);
  const probed = c.snapshotter === 'copy' ? { snapshotter: 'copy' as const, reason: 'set in the config file' } : await chooseSnapshotter(join(p.snapshotsDir, 'tmp'), { mount: c.tools.mount, umount: c.tools.umount, mknod: c.tools.mknod });
  if (c.snapshotter === 'overlayfs' && probed.snapshotter !== 'overlayfs') {
    log.error('overlayfs was asked for in the config file but cannot be used here; using copy', { reason: probed.reason });
  }
  const snap = probed;
  log.info('snapshotter chosen', { snapshotter: snap.snapshotter, reason: snap.reason });
  const content = new ContentStore(join(p.imagesDir, 'content'));
  const imageRecords = new ImageStore(join(p.imagesDir, 'records'));
  // Layers unpack in worker threads: every core, and the CRI thread stays free.
  const unpackPool = new UnpackPool();
  const layers = new LayerStore({
    root: p.snapshotsDir,
    snapshotter: snap.snapshotter,
    log: log.child('unpack'),
    tools: { mknod: c.tools.mknod, setfattr: c.tools.setfattr, mkfifo: c.tools.mkfifo },
    // uid 0 of the node's user namespace may give files any of its 65536 ids.
    preserveOwnership: true,
    copyTree: (from, to) => copyTree(c.tools.cp ?? '/bin/cp', from, to),
    unpacker: (job, signal) => unpackPool.run(job, signal),
  });
  await Promise.all([content.init(), imageRecords.init(), layers.init()]);
  const containerStoreRef: { current?: ContainerStore } = {};
  const registry = createRegistry('runtime', agentVersion);
  // What escapes every handler is logged with its stack and counted; the runtime half keeps serving.
  guardProcess(log, (kind) => countUncaught(registry, kind));
  const pullMetrics = imageMetrics(registry);
  const images = new ImageService({
    onPullStart: () => pullMetrics.pullStarted(),
    onBytes: (n) => pullMetrics.bytesFetched(n),
    onPull: (e) => pullMetrics.pullFinished(e),
    content,
    images: imageRecords,
    layers,
    registry: new RegistryClient({ hosts: c.registries, log: log.child('registry') }),
    log: log.child('images'),
    scratchDir: join(p.imagesDir, 'tmp'),
    ...(crashPoint ? { crashPoint } : {}),
    // Layers a container's rootfs stands on stay until the container is removed.
    layersInUse: () => containerStoreRef.current?.layersInUse() ?? new Set<string>(),
  });
  const sandboxes = new SandboxStore(p.sandboxRecordsDir);
  await sandboxes.init();
  const podNamespaces = new PodNamespaces({
    root: p.podNamespacesDir,
    unshare: c.tools.unshare ?? '/usr/bin/unshare',
    nsenter: c.tools.nsenter ?? '/usr/bin/nsenter',
    catatonit: c.tools.catatonit ?? '/usr/bin/catatonit',
    mount: c.tools.mount ?? '/bin/mount',
    umount: c.tools.umount ?? '/bin/umount',
  });
  const cni = await CniNetwork.load(conflist, c.tools.cniBinDir, { ...process.env, PATH: `${process.env.PATH ?? ''}:/usr/sbin:/sbin` });
  const pods: PodRuntime = {
    store: sandboxes,
    namespaces: podNamespaces,
    cni,
    ports: new RootlesskitPorts(ns.portApiSocket),
    podsDir: p.podFilesDir,
    nodeResolvConf: await readFile('/etc/resolv.conf', 'utf8').catch(() => 'nameserver 10.0.2.3\n'),
    nodeHostname: hostname(),
    nodeIds: { uids: idCountOf(await readFile('/proc/self/uid_map', 'utf8')), gids: idCountOf(await readFile('/proc/self/gid_map', 'utf8')) },
  };
  const containerStore = new ContainerStore(p.containerRecordsDir);
  await containerStore.init();
  containerStoreRef.current = containerStore;
  // A record that did not parse was moved aside, never deleted: the operator must hear of it.
  for (const m of movedAsideRecords) log.error('a record did not parse and was moved aside', { file: m.file, movedTo: m.movedTo, error: m.error });
  for (const d of [p.bundlesDir, p.exitDir, p.attachDir, p.runcRoot]) await mkdir(d, { recursive: true, mode: 0o700 });
  const runc = c.tools.runc ?? '/usr/sbin/runc';
  const cgroups = await detectCgroups();
  const containerCgroups = await prepareContainerCgroups(cgroups);
  if (containerCgroups.canEnforceLimits) log.info('containers get cgroups of their own: limits are enforced', { under: containerCgroups.path });
  else log.warn('resource limits will not be enforced', { reason: containerCgroups.reason });
  const unenforcedLimits = containerCgroups.canEnforceLimits ? (['hugepages'] as const) : (['cpu', 'memory', 'pids', 'hugepages'] as const);
  const containersViewRoot = '/run/usernode/userns';
  const containers: ContainerRuntime = {
    store: containerStore,
    rootfs: new ContainerRootfs({ root: p.snapshotsDir, viewRoot: containersViewRoot, snapshotter: snap.snapshotter, mount: c.tools.mount ?? '/bin/mount', umount: c.tools.umount ?? '/bin/umount', cp: c.tools.cp ?? '/bin/cp' }),
    // On the node namespace's own /run, as the user-namespace views: the binds exist only in its mount namespace.
    mountSources: new MountSources({ root: '/run/usernode/mounts', mount: c.tools.mount ?? '/bin/mount', umount: c.tools.umount ?? '/bin/umount' }),
    runtime: new RuncRuntime(runc, p.runcRoot),
    monitor: new ConmonMonitor(c.tools.conmon ?? '/usr/bin/conmon', runc, p.runcRoot),
    bundlesDir: p.bundlesDir,
    exitDir: p.exitDir,
    socketDir: p.attachDir,
    cgroups: containerCgroups.canEnforceLimits ? { canEnforceLimits: true, path: containerCgroups.path! } : { canEnforceLimits: false },
    seccompDefault: runtimeDefaultSeccomp,
    runc,
    runcRoot: p.runcRoot,
    stats: new StatsCollector({ log: log.child('stats'), noCgroupReason: cgroups.reason }),
  };
  // Before serving: adopt what the records name, release what a killed
  // runtime half left without one, and trust nothing of a runtime folder that
  // was wiped (reboot, logout) beyond what the records in the data folder say.
  const recoveryStart = Date.now();
  const recovered = await recoverRuntime({ pods, containers, log: log.child('recover'), podCIDR: c.network.podCIDR, ipamDir: join(p.cniIpamDir, c.network.networkName), viewRoot: containersViewRoot });
  log.info('recovered', { ...recovered, ms: Date.now() - recoveryStart });
  // Whatever a crash mid-pull left is not referenced by any record; after the
  // container records are loaded, so the layers their rootfs stand on stay.
  await images.collectGarbage();

  // The streaming server listens on the node's loopback (where a kubelet in the
  // node namespace, or critest entered there, connects), and rootlesskit
  // forwards the same port from the host's loopback (crictl on the host): one
  // URL works in both.
  const streaming = new StreamingServer(
    streamingHandlers(() => ctx, {
      script: c.tools.script ?? '/usr/bin/script',
      stty: c.tools.stty ?? '/bin/stty',
      nsenter: c.tools.nsenter ?? '/usr/bin/nsenter',
      socat: c.tools.socat ?? '/usr/bin/socat',
    }),
    log.child('streaming'),
  );
  const streamingForward = await exposeStreaming(streaming, pods.ports, c.streaming, log);

  // Recursive read-only mounts are runc's "rro" (mount_setattr, kernel 5.12+): advertised when this runc has it.
  const recursiveReadOnlyMounts = await runTool(runc, ['features'])
    .then((r) => r.code === 0 && ((JSON.parse(r.stdout) as { mountOptions?: string[] }).mountOptions ?? []).includes('rro'))
    .catch(() => false);

  let serving = false;
  const ctx: CriContext = {
    log: log.child('cri'),
    version: agentVersion,
    cgroupDriver: 'CGROUPFS',
    // Pods of their own user namespace (hostUsers: false), mapped inside the node's ids.
    features: { userNamespaces: true, recursiveReadOnlyMounts },
    dirs: { images: p.imagesDir, snapshots: p.snapshotsDir },
    images,
    pods,
    containers,
    events: new EventBus<ContainerEvent>(),
    snapshotter: snap.snapshotter,
    streaming,
    ...(crashPoint ? { crashPoint } : {}),
    ready: () => serving,
    health: async (): Promise<RuntimeHealth> => {
      const missing: string[] = [];
      for (const [name, path] of [['runc', c.tools.runc], ['conmon', c.tools.conmon]] as const) {
        if (!path || !(await executable(path))) missing.push(name);
      }
      const dataWritable = await access(c.dataDir, constants.W_OK).then(
        () => true,
        () => false,
      );
      const net = await checkPodNetwork(c.tools.cniBinDir, conflist);
      const uplink = await defaultRouteVia('tap0');
      return {
        runtime:
          missing.length > 0
            ? { ready: false, reason: 'OCIRuntimeMissing', message: `not found or not executable: ${missing.join(', ')} (apt-get install runc conmon)` }
            : !dataWritable
              ? { ready: false, reason: 'StateDirNotWritable', message: `${c.dataDir} is not writable` }
              : { ready: true, reason: '', message: '' },
        network: !net.ready
          ? { ready: false, reason: 'NetworkPluginNotReady', message: net.message }
          : !uplink
            ? { ready: false, reason: 'NodeNetworkDown', message: 'no default route through tap0 (slirp4netns) in the node namespace' }
            : { ready: true, reason: '', message: '' },
      };
    },
    verboseInfo: async () => ({
      config: JSON.stringify({
        criSocket: c.criSocket,
        runtimeDir: c.runtimeDir,
        dataDir: c.dataDir,
        network: c.network,
        tools: c.tools,
        cgroupDriver: 'cgroupfs',
      }),
      nodeNamespace: JSON.stringify({ driver: 'rootlesskit', ...ns, uidMap: uidMap.trim().split('\n').map((l) => l.trim().split(/\s+/).map(Number)) }),
      cniconfig: await readFile(conflist, 'utf8').then((t) => JSON.stringify(JSON.parse(t))),
      rootless: JSON.stringify({ cgroups, containerCgroups, unenforced: unenforcedLimits }),
      snapshotter: JSON.stringify(snap),
      stats: JSON.stringify(containers.stats.describe()),
      registries: JSON.stringify(c.registries),
      recordsMovedAside: JSON.stringify(movedAsideRecords),
      imageLeases: JSON.stringify(images.leased()),
    }),
  };

  const cri = criMetrics(registry);
  runtimeMetrics(registry, {
    snapshotter: snap.snapshotter,
    unenforced: unenforcedLimits,
    // This process is in the node's network namespace: its net/dev shows slirp4netns' tap0.
    uplink: async () => (await readNetDev('/proc/self/net/dev')).find((i) => i.name === 'tap0'),
    portForwards: () => pods.ports.list(),
    sandboxes: () => sandboxes.list(),
    containers: () => containerStore.list(),
    recordsMovedAside: () => movedAsideRecords.length,
  });
  const server = new CriServer({ socketPath: c.criSocket, ctx, uid: process.getuid?.() ?? 0, observe: (...a) => cri.observe(...a) });
  // The node half serves these along with its own (pkg/metrics/server.ts).
  const metrics = await serveMetrics({ socket: p.runtimeMetricsSocket }, registry);
  publishLifecycleEvents(ctx);
  const stopping = new AbortController();
  const exits = new ExitWatcher({ containers, log: log.child('exits') });
  void exits.run(stopping.signal);
  await exits.ready;
  await server.start();
  serving = true;
  log.info('runtime half serving', { sinceStartMs: Math.round(process.uptime() * 1000) });
  await new Promise<void>((resolve) => {
    for (const sig of ['SIGTERM', 'SIGINT'] as const) process.once(sig, () => resolve());
  });
  serving = false;
  log.info('runtime half stopping');
  // Event streams end (UNAVAILABLE, as containerd's) instead of holding the shutdown up.
  ctx.events.close();
  stopping.abort();
  await exits.done;
  await server.stop();
  await streaming.close();
  await pods.ports.remove(streamingForward).catch(() => undefined);
  await metrics.close();
  await unpackPool.close();
  return 0;
}

/**
 * Starts the streaming server in the node namespace and forwards the same
 * port from the host (rootlesskit's port driver) at the configured address: a
 * loopback or wildcard address is listened on as such in the node namespace;
 * any other (one of the host's own) is the host side only. A forward a
 * previous runtime half left (to the node's loopback, the same port) is taken
 * down first. Port 0: any port free on both sides (tried up to five times).
 */
async function exposeStreaming(streaming: StreamingServer, ports: PortManager, address: { host: string; port: number }, log: ReturnType<typeof createLogger>): Promise<number> {
  for (const f of await ports.list()) {
    if (f.childIP === '127.0.0.1' && f.hostPort === f.childPort && (f.hostIP === address.host || f.hostIP === '127.0.0.1')) await ports.remove(f.id).catch(() => undefined);
  }
  const inNode = address.host === '127.0.0.1' || address.host === '0.0.0.0' || address.host === 'localhost' ? address.host : '0.0.0.0';
  const urlHost = address.host === '0.0.0.0' ? '127.0.0.1' : address.host;
  for (let attempt = 1; ; attempt++) {
    const port = await streaming.listen(inNode, address.port, urlHost);
    try {
      const f = await ports.add({ protocol: 'tcp', hostIP: address.host === 'localhost' ? '127.0.0.1' : address.host, hostPort: port, childIP: '127.0.0.1', childPort: port });
      log.info('streaming server listening', { url: `http://${urlHost}:${port}`, hostForward: f.id });
      return f.id;
    } catch (e: unknown) {
      await streaming.close();
      if (address.port !== 0 || attempt >= 5) throw new Error(`the streaming server's port ${port} cannot be forwarded from the host (streamingAddress): ${(e as Error).message}`);
    }
  }
}

/**
 * Test-only fault injection (test/integration/crash_recovery.test.ts):
 * USERNODE_TEST_KILL_AT_FILE names a file the test writes "<step>[:<n>]"
 * into; the n-th time (default the first) this process reaches that step
 * (CriContext.crashPoint) it removes the file and SIGKILLs itself, as a
 * crash there would. A file, not the variable itself: the restarted runtime
 * half inherits the environment and must not die at the same step again.
 */
function testCrashPoints(env: NodeJS.ProcessEnv, log: ReturnType<typeof createLogger>): ((step: string) => void) | undefined {
  const file = env.USERNODE_TEST_KILL_AT_FILE;
  if (!file) return undefined;
  log.warn('test-only fault injection is on', { file });
  const seen = new Map<string, number>();
  return (step) => {
    let want: string;
    try {
      want = readFileSync(file, 'utf8').trim();
    } catch {
      return;
    }
    const [name, n] = want.split(':');
    if (name !== step) return;
    const count = (seen.get(want) ?? 0) + 1;
    seen.set(want, count);
    if (count < Number(n ?? 1)) return;
    rmSync(file, { force: true });
    process.kill(process.pid, 'SIGKILL');
  };
}

/** cp -a keeps owners, modes, links and times: a copy-snapshotter layer starts as its parent. */
async function copyTree(cp: string, from: string, to: string): Promise<void> {
  const r = await runTool(cp, ['-a', '--', from, to]);
  if (r.code !== 0) throw new Error(`cp -a ${from} ${to}: ${r.stderr.trim() || `exit code ${r.code}`}`);
}

async function executable(path: string): Promise<boolean> {
  return access(path, constants.X_OK).then(
    () => true,
    () => false,
  );
}

/**
 * /proc/net is the reader's network namespace (unlike /sys, which stays the
 * host's here); the kernel drops an interface's routes when it goes down.
 */
async function defaultRouteVia(iface: string): Promise<boolean> {
  try {
    const rows = (await readFile('/proc/net/route', 'utf8')).split('\n').slice(1);
    return rows.some((r) => {
      const [name, dest] = r.trim().split(/\s+/);
      return name === iface && dest === '00000000';
    });
  } catch {
    return false;
  }
}
