import { detectCgroups } from '../../pkg/sandbox/cgroups.js';
import { type CheckResult, fatalProblems, formatReport, runPreflight } from '../../pkg/node/preflight.js';
import type { AgentConfig } from './config.js';
import { realHost } from './host.js';

export async function preflight(c: AgentConfig, env: NodeJS.ProcessEnv): Promise<CheckResult[]> {
  const cg = await detectCgroups();
  return runPreflight(realHost(c.uid, c.username, env.PATH), {
    tools: c.tools,
    xdgRuntimeDir: c.xdgRuntimeDir,
    cgroupWarning: cg.canEnforceLimits ? undefined : cg.reason,
  });
}

/** `usernode check`: prints every prerequisite; exit 1 when one that `run` needs is missing. */
export async function check(c: AgentConfig, env: NodeJS.ProcessEnv): Promise<number> {
  const results = await preflight(c, env);
  process.stdout.write(`usernode check for ${c.username} (uid ${c.uid})\n${formatReport(results)}`);
  return fatalProblems(results).length > 0 ? 1 : 0;
}
