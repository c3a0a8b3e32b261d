import { mkdir, rename, writeFile } from 'node:fs/promises';
import { fileURLToPath } from 'node:url';

import { criVersion } from '../../proto/client.js';
import { prepareSocketPath } from '../../pkg/cri/socket_path.js';
import { createLogger } from '../../pkg/log/logger.js';
import { enterArgv } from '../../pkg/netns/node_namespace.js';
import { terminate } from '../../pkg/netns/procfs.js';
import { fatalProblems, formatReport } from '../../pkg/node/preflight.js';
import { RuntimeSupervisor } from '../../pkg/node/runtime_supervisor.js';
import { countUncaught, createRegistry } from '../../pkg/metrics/registry.js';
import { guardProcess } from '../../pkg/log/process_guard.js';
import { scrapeSocket, serveMetrics } from '../../pkg/metrics/server.js';
import { failedPrecondition } from '../../pkg/errdefs/errors.js';
import { agentVersion } from './version.js';
import { type AgentConfig, pathsOf, toolPath } from './config.js';
import { nodeNamespaceDriver } from './drivers.js';
import { preflight } from './check.js';
import { acquirePidLock, agentPidAlive, readPid } from './lock.js';
import { startNodeHalf } from './node_half.js';

// `usernode run`: the node half. It runs in the host's namespaces as the user,
// makes or reuses the node namespace, and starts and supervises the runtime
// half inside it. SIGTERM/SIGINT stop the agent's own processes only: the node
// namespace and everything running in it stay for the next `usernode run`.

export const mainScript = fileURLToPath(new URL('./main.js', import.meta.url));

export async function runNode(c: AgentConfig, env: NodeJS.ProcessEnv): Promise<number> {
  const log = createLogger({ level: c.logLevel, component: 'node' });
  const problems = fatalProblems(await preflight(c, env));
  if (problems.length > 0) {
    process.stderr.write(`usernode run: the host is not ready for a rootless node:\n${formatReport(problems)}`);
    return 1;
  }
  const p = pathsOf(c);
  await mkdir(c.runtimeDir, { recursive: true, mode: 0o700 });
  await mkdir(c.dataDir, { recursive: true, mode: 0o700 });
  const release = await acquirePidLock(p.agentPid, c.username);
  const cleanup: Array<() => Promise<void>> = [release];
  const unwind = async (): Promise<void> => {
    for (const f of cleanup.reverse()) await f().catch(() => {});
  };
  try {
    // A runtime half left by an agent that was killed outright still holds the socket.
    const orphan = await readPid(p.runtimePid);
    if (orphan !== undefined && agentPidAlive(orphan)) {
      log.warn('stopping a runtime half left by an earlier agent', { pid: orphan });
      await terminate([orphan], 5000);
    }
    await prepareSocketPath(c.criSocket, c.uid);

    const registry = createRegistry('node', agentVersion);
    // What escapes every handler is logged with its stack and counted; the node half keeps serving.
    guardProcess(log, (kind) => countUncaught(registry, kind));
    const metrics = await serveMetrics(c.metrics, registry, () => scrapeSocket(p.runtimeMetricsSocket)).catch((e: unknown) => {
      throw failedPrecondition(`cannot serve metrics on ${c.metrics.host}:${c.metrics.port}: ${(e as Error).message}; set metricsAddress in the config file`, {
        field: 'metricsAddress',
      });
    });
    cleanup.push(() => metrics.close());
    log.info('metrics listening', { address: `http://${metrics.address}/metrics` });

    const driver = nodeNamespaceDriver(c, log, env);
    const ns = await driver.ensure();
    log.info(ns.created ? 'created the node namespace' : 'reusing the node namespace', { holder: ns.holderPid, netns: ns.netNs });

    const resolved = { config: c, nodeNamespace: ns };
    await writeFile(`${p.resolvedConfig}.tmp`, JSON.stringify(resolved, null, 2) + '\n', { mode: 0o600 });
    await rename(`${p.resolvedConfig}.tmp`, p.resolvedConfig);

    const [file, ...args] = enterArgv(c.tools.nsenter ?? 'nsenter', ns, [process.execPath, mainScript, 'runtime', '--resolved-config', p.resolvedConfig]);
    const supervisor = new RuntimeSupervisor({
      command: { file: file!, args, env: { ...env, PATH: toolPath(env.PATH) } },
      log: log.child('supervisor'),
      pidFile: p.runtimePid,
      ...restartBackoff(env),
      probe: () => criVersion(c.criSocket, 1000).then(
        () => true,
        () => false,
      ),
    });
    const stop = new AbortController();
    for (const sig of ['SIGTERM', 'SIGINT'] as const) {
      process.on(sig, () => {
        log.info('stopping the agent; the node namespace and its pods keep running', { signal: sig });
        stop.abort();
      });
    }
    const done = supervisor.run(stop.signal);
    const readyOrDone = await Promise.race([supervisor.ready.then(() => 'ready' as const), done.then(() => 'done' as const)]);
    if (readyOrDone === 'ready') {
      log.info('usernode is ready', { criSocket: c.criSocket, holder: ns.holderPid, runtimePid: supervisor.pid });
      if (c.cluster.kubelet !== undefined) {
        // Kubelet mode: the upstream kubelet is the node's one registrar; the node half stays off.
        cleanup.push(await (await import('./kubelet_mode.js')).startKubeletMode(c, log, ns, env));
      } else {
        // The node half drives the runtime through its CRI socket, as kubelet would.
        cleanup.push(
          await startNodeHalf(c, log, ns, {
            metrics: async () => ({ contentType: registry.contentType, body: (await registry.metrics()) + (await scrapeSocket(p.runtimeMetricsSocket)) }),
            registry,
            metricsServer: metrics,
          }),
        );
      }
    }
    await done;
    await unwind();
    return 0;
  } catch (e: unknown) {
    await unwind();
    throw e;
  }
}

/**
 * Test-only: USERNODE_TEST_RUNTIME_RESTART_MS sets a fixed delay before each
 * restart of the runtime half (the crash-recovery test kills it hundreds of
 * times; the growing default back-off would reach 30 s after eight kills).
 */
function restartBackoff(env: NodeJS.ProcessEnv): { backoffMs?: (n: number) => number } {
  const ms = Number(env.USERNODE_TEST_RUNTIME_RESTART_MS);
  return env.USERNODE_TEST_RUNTIME_RESTART_MS && Number.isFinite(ms) && ms >= 0 ? { backoffMs: () => ms } : {};
}
