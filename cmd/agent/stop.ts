import { readFileSync } from 'node:fs';
import { rm } from 'node:fs/promises';

import { createLogger } from '../../pkg/log/logger.js';
import { criClients, criVersion } from '../../proto/client.js';
import type { ListPodSandboxResponse__Output } from '../../proto/generated/runtime/v1/ListPodSandboxResponse.js';
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
  // Pods first, through the CRI while the runtime still answers: their
  // network is given back (IP leases, NAT rules) as StopPodSandbox does.
  const stoppedPods = await stopPods(c.criSocket).catch((e: unknown) => {
    log.warn('could not stop the pods through the CRI', { error: (e as Error).message });
    return 0;
  });
  if (stoppedPods > 0) lines.push(`stopped ${stoppedPods} pod sandbox(es)`);
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

  // What teardown could not stop, and any process still naming this node's
  // folders (rootlesskit's state dir, the runtime half's config): a leak worth
  // naming. Other nodes of the same user are not this node's business.
  const leftovers = (await processesOf(c.uid)).filter((q) => report.survivors.includes(q.pid) || cmdlineMentions(q.pid, c.runtimeDir));
  if (lines.length === 0) lines.push('usernode is not running; nothing to stop');
  process.stdout.write(lines.map((l) => `usernode stop: ${l}\n`).join(''));
  if (leftovers.length > 0) {
    process.stderr.write(`usernode stop: still running: ${leftovers.map((q) => `${q.comm} (pid ${q.pid})`).join(', ')}\n`);
    return 1;
  }
  return 0;
}

async function stopPods(socket: string): Promise<number> {
  try {
    await criVersion(socket, 2000);
  } catch {
    return 0; // Not running: nothing to stop through it.
  }
  const c = criClients(socket);
  try {
    const list = await new Promise<ListPodSandboxResponse__Output>((res, rej) =>
      c.runtime.ListPodSandbox({ filter: { state: { state: 'SANDBOX_READY' } } }, { deadline: Date.now() + 10000 }, (e, r) => (e || !r ? rej(e ?? new Error('empty')) : res(r))),
    );
    for (const p of list.items) {
      await new Promise<void>((res, rej) => c.runtime.StopPodSandbox({ podSandboxId: p.id }, { deadline: Date.now() + 60000 }, (e) => (e ? rej(e) : res())));
    }
    return list.items.length;
  } finally {
    c.close();
  }
}

function cmdlineMentions(pid: number, path: string): boolean {
  if (pid === process.pid) return false;
  try {
    return readFileSync(`/proc/${pid}/cmdline`, 'utf8').split('\0').some((a) => a.includes(path));
  } catch {
    return false;
  }
}
