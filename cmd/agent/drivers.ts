import type { Logger } from '../../pkg/log/logger.js';
import type { NodeNamespaceDriver } from '../../pkg/netns/node_namespace.js';
import { RootlesskitDriver } from '../../pkg/netns/rootlesskit/driver.js';
import { type AgentConfig, pathsOf, toolPath } from './config.js';

// The one place that chooses drivers (STYLE.md: only the entry point does).

export function nodeNamespaceDriver(c: AgentConfig, log: Logger, env: NodeJS.ProcessEnv): NodeNamespaceDriver {
  const p = pathsOf(c);
  return new RootlesskitDriver({
    rootlesskit: c.tools.rootlesskit ?? 'rootlesskit',
    slirp4netns: c.tools.slirp4netns ?? 'slirp4netns',
    holderCommand: [c.tools.sleep ?? '/bin/sleep', 'infinity'],
    stateDir: p.rootlesskitState,
    recordPath: p.nodeNamespaceRecord,
    logPath: p.rootlesskitLog,
    mtu: c.network.mtu,
    // Kubelet mode: kubelet's fixed folders must be writable inside (cmd/agent/kubelet_mode.ts binds the user's folders there).
    ...(c.cluster.kubelet !== undefined ? { extraCopyUp: ['/var/lib', '/var/log'] } : {}),
    env: { ...env, PATH: toolPath(env.PATH) },
    uid: c.uid,
    log: log.child('nodens'),
  });
}
