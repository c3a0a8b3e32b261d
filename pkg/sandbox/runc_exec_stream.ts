import { spawn, type ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { readFile, readlink, rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import type { Readable } from 'node:stream';
import { setTimeout as sleep } from 'node:timers/promises';

import { runTool } from '../netns/exec_tool.js';
import { execExitCode, killExecCommand } from './runc_exec.js';

// An interactive command in a running container (the streaming Exec): runc
// exec with the container's process settings and the new argv, its stdio
// handed to the caller. Without a tty the pipes are runc's own. With one, runc
// insists on a terminal of its own to relay the container's pty to, so it runs
// under util-linux `script` (a pty, no echo of its own); a resize sets that
// pty's size with `stty -F`, and runc passes it on to the container's.

export interface StreamExecOptions {
  runc: string;
  root: string;
  bundle: string;
  containerId: string;
  cmd: readonly string[];
  tty: boolean;
  stdin: boolean;
  script: string;
  stty: string;
}

export interface StreamExec {
  stdin?: NodeJS.WritableStream;
  stdout: Readable;
  stderr: Readable;
  /** The command's exit code (126/127 when it cannot be run, as a shell gives). */
  exit: Promise<number>;
  resize(width: number, height: number): Promise<void>;
  /** Ends the command (SIGKILL) if it still runs; idempotent. */
  kill(): Promise<void>;
}

const shellQuote = (s: string): string => `'${s.replace(/'/g, `'\\''`)}'`;

export async function startStreamExec(o: StreamExecOptions): Promise<StreamExec> {
  const spec = JSON.parse(await readFile(join(o.bundle, 'config.json'), 'utf8')) as { process: Record<string, unknown> };
  const name = `exec-${randomBytes(6).toString('hex')}`;
  const procFile = join(o.bundle, `${name}.json`);
  const pidFile = join(o.bundle, `${name}.pid`);
  await writeFile(procFile, JSON.stringify({ ...spec.process, args: o.cmd, terminal: o.tty }), { mode: 0o600 });
  const runcArgs = ['--root', o.root, 'exec', ...(o.tty ? ['-t'] : []), '--process', procFile, '--pid-file', pidFile, o.containerId];
  const child: ChildProcess = o.tty
    ? spawn(o.script, ['-q', '-e', '-f', '-E', 'never', '-c', [o.runc, ...runcArgs].map(shellQuote).join(' '), '/dev/null'], { stdio: ['pipe', 'pipe', 'pipe'] })
    : spawn(o.runc, runcArgs, { stdio: [o.stdin ? 'pipe' : 'ignore', 'pipe', 'pipe'] });
  let stderrText = '';
  child.stderr!.on('data', (d: Buffer) => {
    if (stderrText.length < 4096) stderrText += d.toString();
  });
  const exit = new Promise<number>((resolve) => {
    child.on('error', () => resolve(126));
    child.on('close', (code, sig) => resolve(execExitCode(code, sig, stderrText)));
  });
  void exit.finally(() => Promise.all([rm(procFile, { force: true }), rm(pidFile, { force: true })])).catch(() => undefined);

  let done = false;
  void exit.then(() => (done = true));
  return {
    ...(child.stdin ? { stdin: child.stdin } : {}),
    stdout: child.stdout!,
    stderr: child.stderr!,
    exit,
    async resize(width: number, height: number): Promise<void> {
      if (!o.tty || done) return;
      // runc's terminal is script's pty: the stdin of script's child (which
      // may not be there yet: the first size comes as the client connects).
      let tty = '';
      for (let i = 0; i < 40 && !done && !tty.startsWith('/dev/pts/'); i++) {
        const children = await readFile(`/proc/${child.pid}/task/${child.pid}/children`, 'utf8').catch(() => '');
        const pid = Number.parseInt(children.trim().split(/\s+/)[0] ?? '', 10);
        if (pid > 0) tty = await readlink(`/proc/${pid}/fd/0`).catch(() => '');
        if (!tty.startsWith('/dev/pts/')) await sleep(50);
      }
      if (!tty.startsWith('/dev/pts/')) return;
      await runTool(o.stty, ['-F', tty, 'rows', String(height), 'cols', String(width)]).catch(() => undefined);
    },
    kill(): Promise<void> {
      return killExecCommand(pidFile, () => done, child);
    },
  };
}
