import { spawn } from 'node:child_process';

import { failedPrecondition } from '../../pkg/errdefs/errors.js';
import { silentLogger } from '../../pkg/log/logger.js';
import { enterArgv } from '../../pkg/netns/node_namespace.js';
import { type AgentConfig, toolPath } from './config.js';
import { nodeNamespaceDriver } from './drivers.js';

// `usernode enter -- CMD`: CMD inside the node namespace (user, mount and
// network), as uid 0 of the node, the way usernetes' nsenter wrapper works,
// so crictl, kubelet or a shell see what the runtime sees.

export async function enter(c: AgentConfig, env: NodeJS.ProcessEnv, command: string[]): Promise<number> {
  const ns = await nodeNamespaceDriver(c, silentLogger, env).find();
  if (!ns) throw failedPrecondition('the node namespace is not running; start it with "usernode run"');
  const cmd = command.length > 0 ? command : [env.SHELL || '/bin/sh'];
  const [file, ...args] = enterArgv(c.tools.nsenter ?? 'nsenter', ns, cmd, process.cwd());
  const child = spawn(file!, args, { stdio: 'inherit', env: { ...env, PATH: toolPath(env.PATH) } });
  // The terminal sends SIGINT to the whole foreground group; the child handles it.
  const ignore = (): void => {};
  process.on('SIGINT', ignore);
  process.on('SIGTERM', () => child.kill('SIGTERM'));
  return new Promise((resolve) => {
    child.once('error', (e) => {
      process.stderr.write(`usernode enter: ${e.message}\n`);
      resolve(127);
    });
    child.once('exit', (code, sig) => resolve(code ?? 128 + (sig ? signalNumber(sig) : 0)));
  });
}

function signalNumber(sig: NodeJS.Signals): number {
  const table: Partial<Record<NodeJS.Signals, number>> = { SIGHUP: 1, SIGINT: 2, SIGQUIT: 3, SIGKILL: 9, SIGTERM: 15 };
  return table[sig] ?? 1;
}
