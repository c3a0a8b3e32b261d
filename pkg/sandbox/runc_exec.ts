import { spawn } from 'node:child_process';
import { readFile, rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { randomBytes } from 'node:crypto';

import { deadlineExceeded } from '../errdefs/errors.js';

// A command run to completion in a running container (ExecSync): runc exec
// with the container's own process settings (user, env, cwd, capabilities)
// and the new argv; stdout and stderr collected, bounded; killed at the
// timeout.

export interface ExecResult {
  stdout: Buffer;
  stderr: Buffer;
  exitCode: number;
}

const maxOutput = 16 * 1024 * 1024;

export async function runcExecSync(runc: string, root: string, bundle: string, id: string, cmd: readonly string[], timeoutSeconds: number, signal?: AbortSignal): Promise<ExecResult> {
  const spec = JSON.parse(await readFile(join(bundle, 'config.json'), 'utf8')) as { process: Record<string, unknown> };
  const proc = { ...spec.process, args: cmd, terminal: false };
  const procFile = join(bundle, `exec-${randomBytes(6).toString('hex')}.json`);
  await writeFile(procFile, JSON.stringify(proc), { mode: 0o600 });
  try {
    return await new Promise<ExecResult>((resolve, reject) => {
      const child = spawn(runc, ['--root', root, 'exec', '--process', procFile, id], { stdio: ['ignore', 'pipe', 'pipe'] });
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
      const timer = timeoutSeconds > 0 ? setTimeout(() => ((timedOut = true), child.kill('SIGKILL')), timeoutSeconds * 1000) : undefined;
      const onAbort = (): void => {
        child.kill('SIGKILL');
      };
      signal?.addEventListener('abort', onAbort, { once: true });
      child.on('error', reject);
      child.on('close', (code, sig) => {
        if (timer) clearTimeout(timer);
        signal?.removeEventListener('abort', onAbort);
        if (timedOut) {
          reject(deadlineExceeded(`command timed out after ${timeoutSeconds} s`, { field: 'timeout' }));
          return;
        }
        const stderr = Buffer.concat(err);
        // runc's own failure (e.g. the executable is missing) is the exit code a user expects: 126/127 as a shell gives.
        const text = stderr.toString();
        let exitCode = code ?? (sig ? 128 + 9 : 1);
        if (code === 255 && /executable file not found|no such file or directory/.test(text)) exitCode = 127;
        else if (code === 255 && /permission denied/.test(text)) exitCode = 126;
        resolve({ stdout: Buffer.concat(out), stderr, exitCode });
      });
    });
  } finally {
    await rm(procFile, { force: true });
  }
}
