import { spawn } from 'node:child_process';
import { closeSync, constants, openSync, readFileSync } from 'node:fs';
import { open, readFile, stat } from 'node:fs/promises';
import { join } from 'node:path';

import { failedPrecondition, internal, messageOf } from '../errdefs/errors.js';
import { type SyncReport, SyncPipeReader } from './conmon_sync.js';
import type { ContainerMonitor, MonitorCreate } from './oci_runtime.js';

// conmon (Debian) holds each container's stdio, writes its output in the CRI
// log format, records its exit code in the exit folder and keeps all of that
// going while the agent restarts. It double-forks: our child exits at once,
// the monitor stays, and reports the container's pid (or runc's error) on
// the sync pipe, fd 3.

export class ConmonMonitor implements ContainerMonitor {
  constructor(
    private readonly conmon: string,
    private readonly runc: string,
    private readonly runcRoot: string,
  ) {}

  create(o: MonitorCreate): Promise<{ pid: number }> {
    const args = [
      '--api-version', '1',
      '-c', o.id,
      '-u', o.id,
      '-n', o.name,
      '-r', this.runc,
      '-b', o.bundle,
      '-p', `${o.bundle}/pidfile`,
      '-P', `${o.bundle}/conmon.pid`,
      '-l', `k8s-file:${o.logPath}`,
      '--exit-dir', o.exitDir,
      '--socket-dir-path', o.socketDir,
      '--runtime-arg', `--root=${this.runcRoot}`,
      '--log-level', 'error',
      ...(o.terminal ? ['-t'] : []),
      ...(o.stdin ? ['-i'] : []),
      ...(o.stdin && !o.stdinOnce ? ['--leave-stdin-open'] : []),
    ];
    // conmon's own messages go to a file in the bundle: a pipe to the agent
    // would break (and could take conmon down) when the agent restarts.
    const errLog = openSync(`${o.bundle}/conmon.log`, 'a', 0o600);
    return new Promise((resolve, reject) => {
      // Detached: a terminal's Ctrl-C to the agent must not reach the monitors.
      const child = spawn(this.conmon, args, { stdio: ['ignore', 'ignore', errLog, 'pipe'], env: { ...process.env, _OCI_SYNCPIPE: '3' }, detached: true });
      closeSync(errLog);
      child.unref();
      const errText = (): string => {
        try {
          return readFileSync(`${o.bundle}/conmon.log`, 'utf8').trim().split('\n').slice(-5).join('; ');
        } catch {
          return '';
        }
      };
      let settled = false;
      const finish = (e: Error | undefined, pid?: number): void => {
        if (settled) return;
        settled = true;
        clearTimeout(timer);
        const p = child.stdio[3] as (NodeJS.ReadableStream & { destroy?: () => void }) | null;
        p?.removeAllListeners();
        p?.on('error', () => undefined);
        // conmon reports the exit in the exit folder; our end of the pipe is done.
        p?.destroy?.();
        if (e) reject(e);
        else resolve({ pid: pid! });
      };
      const timer = setTimeout(() => finish(internal(`conmon did not report the container within 60 s${errText() ? `: ${errText()}` : ''}`, { field: 'container' })), 60000);
      child.on('error', (e) => finish(internal(`cannot start conmon (${this.conmon}): ${e.message}`, { field: 'conmon' })));
      const pipe = child.stdio[3] as NodeJS.ReadableStream | null;
      const reader = new SyncPipeReader();
      const report = (r: SyncReport): void => {
        if (r.data > 0) return finish(undefined, r.data);
        // runc refused this container as configured (a command that is not there, a mount that cannot be made): the caller's to fix.
        finish(failedPrecondition(`runc could not create the container: ${(r.message ?? errText()).trim() || 'no reason given'}`, { field: 'config' }));
      };
      // A listener that threw would take the whole runtime half down: whatever conmon writes ends in a report or an error.
      pipe?.on('data', (d: Buffer) => {
        try {
          const r = reader.push(d.toString());
          if (r) report(r);
        } catch (e: unknown) {
          finish(internal(`conmon's report could not be read: ${messageOf(e)}`, { field: 'container' }));
        }
      });
      pipe?.on('error', (e: Error) => finish(internal(`conmon's sync pipe failed: ${e.message}`, { field: 'container' })));
      pipe?.on('end', () => {
        const r = reader.end();
        if (r) return report(r);
        const said = reader.leftover().trim() || errText();
        finish(internal(`conmon ended without reporting the container${said ? `: ${said}` : ''}`, { field: 'container' }));
      });
    });
  }

  /**
   * conmon writes its pid to the bundle's conmon.pid (-P); the process of
   * that pid is still it when its argv names the container (a pid may be
   * reused; a zombie's argv is empty).
   */
  async alive(bundle: string, id: string): Promise<boolean> {
    const pid = Number.parseInt(await readFile(join(bundle, 'conmon.pid'), 'utf8').catch(() => ''), 10);
    if (!(pid > 0)) return false;
    const argv = await readFile(`/proc/${pid}/cmdline`, 'utf8').catch(() => '');
    return argv.split('\0').includes(id);
  }

  /** The container's terminal (a tty container, attached) takes this size. */
  async resizeTerminal(bundle: string, width: number, height: number): Promise<void> {
    await this.control(bundle, `1 ${height} ${width}\n`);
  }

  private async control(bundle: string, message: string): Promise<void> {
    const ctl = join(bundle, 'ctl');
    let fifo;
    try {
      fifo = await open(ctl, constants.O_WRONLY | constants.O_NONBLOCK);
    } catch (e: unknown) {
      const code = (e as NodeJS.ErrnoException).code;
      if (code === 'ENXIO' || code === 'ENOENT') throw failedPrecondition('container is not running: no conmon holds its log', { field: 'container_id' });
      throw internal(`cannot open conmon's control fifo ${ctl}: ${messageOf(e)}`, { field: 'container_id' });
    }
    try {
      await fifo.write(message);
    } finally {
      await fifo.close();
    }
  }

  /**
   * conmon reads control messages "TYPE HEIGHT WIDTH\n" from the `ctl` fifo
   * in the bundle (src/ctrl.c): type 1 resizes the terminal, type 2 reopens
   * the log files. Opened without blocking: with no conmon reading, the open
   * fails (ENXIO) instead of hanging.
   */
  async reopenLog(bundle: string, logPath: string): Promise<void> {
    await this.control(bundle, '2 0 0\n');
    const deadline = Date.now() + 10000;
    for (;;) {
      try {
        await stat(logPath);
        return;
      } catch {
        if (Date.now() > deadline) throw internal(`conmon did not reopen the log ${logPath} within 10 s`, { field: 'container_id' });
        await new Promise((r) => setTimeout(r, 20));
      }
    }
  }
}
