import { rm } from 'node:fs/promises';

import { createLogger } from '../../pkg/log/logger.js';
import { processesOf, terminate } from '../../pkg/netns/procfs.js';
import { type AgentConfig, pathsOf } from './config.js';
import { nodeNamespaceDriver } from './drivers.js';
import { agentPidAlive, readPid } from './lock.js';

// `usernode stop`: everything down — the agent, every process in the node
// namespace (pods included), rootlesskit and slirp4netns — and the socket and
// state files removed. Idempotent: a stopped node stops again with success.

export async function stop(c: AgentConfig, env: NodeJS.ProcessEnv): Promise<number> {
  const log = createLogger({ level: c.logLevel, component: 'stop' });
  const p = pathsOf(c);
  const lines: string[] = [];
  for (const [what, file] of [['agent', p.agentPid], ['runtime half', p.runtimePid]] as const) {
    const pid = await readPid(file);
    if (pid !== undefined && agentPidAlive(pid)) {
      const left = await terminate([pid], 15000);
      lines.push(left.length === 0 ? `stopped the ${what} (pid ${pid})` : `could not stop the ${what} (pid ${pid})`);
    }
  }
  const report = await nodeNamespaceDriver(c, log, env).teardown();
  lines.push(...report.stopped.map((s) => `stopped ${s}`));
  for (const f of [c.criSocket, p.agentPid, p.runtimePid, p.resolvedConfig]) await rm(f, { force: true });

  // Anything of ours still named like a node component is a leak worth naming.
  const leftovers = (await processesOf(c.uid)).filter((q) => ['rootlesskit', 'slirp4netns', 'conmon', 'exe'].includes(q.comm) || report.survivors.includes(q.pid));
  if (lines.length === 0) lines.push('usernode is not running; nothing to stop');
  process.stdout.write(lines.map((l) => `usernode stop: ${l}\n`).join(''));
  if (leftovers.length > 0) {
    process.stderr.write(`usernode stop: still running: ${leftovers.map((q) => `${q.comm} (pid ${q.pid})`).join(', ')}\n`);
    return 1;
  }
  return 0;
}
