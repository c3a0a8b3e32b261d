import { spawn, type ChildProcess } from 'node:child_process';
import { readFile, rm, writeFile } from 'node:fs/promises';
import { setTimeout as sleep } from 'node:timers/promises';
import { join } from 'node:path';
import { randomBytes } from 'node:crypto';

import { deadlineExceeded } from '../errdefs/errors.js';

// A command run to completion in a running container (ExecSync): runc exec
// with the container's own process settings (user, env, cwd, capabilities)
// and the new argv; stdout and stderr collected, bounded; killed at the
// timeout. Killing runc is not enough: `runc exec` does not take its process
// down with it, so the command itself (its pid from --pid-file) is killed, and
// runc then exits on its own.

export interface ExecResult {
  stdout: Buffer;
  stderr: Buffer;
  exitCode: number;
}

const maxOutput = 16 * 1024 * 1024;

/**
 * Ends an exec'd command: killing `runc exec` leaves it running, so the
 * command itself (its pid from --pid-file) is killed. The pid file appears once
 * the process runs; until then (or if runc is stuck) keep trying, and after a
 * while take runc itself down.
 */
export async function killExecCommand(pidFile: string, exited: () => boolean, runcProcess: ChildProcess): Promise<void> {
  for (let i = 0; i < 50 && !exited(); i++) {
    const pid = Number.parseInt(await readFile(pidFile, 'utf8').catch(() => ''), 10);
    if (pid > 0) {
      try {
        process.kill(pid, 'SIGKILL');
      } catch {
        // Gone already.
      }
      return;
    }
    await sleep(100);
  }
  if (!exited()) runcProcess.kill('SIGKILL');
}

/** The exit code a user expects of a command runc could not start (as a shell gives: 127 not found, 126 not executable). */
export function execExitCode(code: number | null, signal: NodeJS.Signals | null, runcStderr: string): number {
  const c = code ?? (signal ? 128 + 9 : 1);
  if (code === 255 && /executable file not found|no such file or directory/.test(runcStderr)) return 127;
  if (code === 255 && /permission denied/.test(runcStderr)) return 126;
  return c;
}

/** The longest delay setTimeout keeps (2^31-1 ms); a longer one fires at once. */
export const maxTimerMs = 2 ** 31 - 1;

export async function runcExecSync(runc: string, root: string, bundle: string, id: string, cmd: readonly string[], timeoutSeconds: number, signal?: AbortSignal): Promise<ExecResult> {
  const spec = JSON.parse(await readFile(join(bundle, 'config.json'), 'utf8')) as { process: Record<string, unknown> };
  const proc = { ...spec.process, args: cmd, terminal: false };
  const name = `exec-${randomBytes(6).toString('hex')}`;
  const procFile = join(bundle, `${name}.json`);
  const pidFile = join(bundle, `${name}.pid`);
  await writeFile(procFile, JSON.stringify(proc), { mode: 0o600 });
  try {
    return await new Promise<ExecResult>((resolve, reject) => {
      const child = spawn(runc, ['--root', root, 'exec', '--process', procFile, '--pid-file', pidFile, id], { stdio: ['ignore', 'pipe', 'pipe'] });
      let exited = false;
      const killCommand = (): Promise<void> => killExecCommand(pidFile, () => exited, child);
      const out: Buffer[] = [];
      const err: Buffer[] = [];
      let size = 0;
      const collect = (into: Buffer[]) => (d: Buffer) => {
        if (size + d.length > maxOutput) return;
        size += d.length;
        into.push(d);
      };
      child.stdout.on('data', collect(out));
      child.stderr.on('data', collect(err));
      let timedOut = false;
      // A timeout past what a timer holds (about 24.8 days) is no timeout: Node would fire it after 1 ms.
      const timer = timeoutSeconds > 0 && timeoutSeconds * 1000 <= maxTimerMs ? setTimeout(() => ((timedOut = true), void killCommand()), timeoutSeconds * 1000) : undefined;
      const onAbort = (): void => {
        void killCommand();
      };
      signal?.addEventListener('abort', onAbort, { once: true });
      child.on('error', reject);
      child.on('close', (code, sig) => {
        exited = true;
        if (timer) clearTimeout(timer);
        signal?.removeEventListener('abort', onAbort);
        if (timedOut) {
          reject(deadlineExceeded(`command timed out after ${timeoutSeconds} s`, { field: 'timeout' }));
          return;
        }
        const stderr = Buffer.concat(err);
        const exitCode = execExitCode(code, sig, stderr.toString());
        resolve({ stdout: Buffer.concat(out), stderr, exitCode });
      });
    });
  } finally {
    await rm(procFile, { force: true });
    await rm(pidFile, { force: true });
  }
}
