import { execFile } from 'node:child_process';

// The few file kinds Node's fs cannot make (device nodes, fifos, extended
// attributes) come from the host's coreutils and attr tools, run without a
// shell so no name in the layer is ever parsed as a command.

export class ToolError extends Error {
  constructor(
    readonly tool: string,
    readonly stderr: string,
    cause: unknown,
  ) {
    super(`${tool} failed: ${stderr.trim() || (cause instanceof Error ? cause.message : String(cause))}`, { cause });
    this.name = 'ToolError';
  }
}

export function runTool(tool: string, args: readonly string[], signal: AbortSignal | undefined): Promise<void> {
  return new Promise((resolve, reject) => {
    execFile(tool, args, { signal, timeout: 30_000, env: { LC_ALL: 'C', PATH: '/usr/bin:/bin' } }, (err, _stdout, stderr) => {
      if (err) reject(new ToolError(tool, String(stderr), err));
      else resolve();
    });
  });
}

/** An overlayfs whiteout: a character device 0:0 (allowed without CAP_MKNOD since Linux 5.8). */
export function makeWhiteoutDevice(mknod: string, path: string, signal: AbortSignal | undefined): Promise<void> {
  return runTool(mknod, ['--', path, 'c', '0', '0'], signal);
}

export function makeFifo(mkfifo: string, path: string, mode: number, signal: AbortSignal | undefined): Promise<void> {
  return runTool(mkfifo, ['-m', (mode & 0o7777).toString(8), '--', path], signal);
}

/** Sets one extended attribute on path itself, never on what a link points to (-h); the value goes base64 (0s…) so any bytes survive. */
export function setXattr(setfattr: string, path: string, name: string, value: Buffer, signal: AbortSignal | undefined): Promise<void> {
  return runTool(setfattr, ['-h', '-n', name, '-v', `0s${value.toString('base64')}`, '--', path], signal);
}
