import { createReadStream, createWriteStream } from 'node:fs';
import { readdir, rename, rm, stat } from 'node:fs/promises';
import { basename, dirname, join } from 'node:path';
import { pipeline } from 'node:stream/promises';
import { createGzip } from 'node:zlib';

import type { Logger } from '../log/logger.js';

// Container log rotation as kubelet's container log manager does it
// (pkg/kubelet/logs/container_log_manager.go): every monitor interval, for
// each running container whose current log is at least maxSize bytes —
//   1. leftovers of an interrupted round go (`*.tmp`, a rotated file whose
//      `.gz` already exists);
//   2. the oldest rotated files go, leaving maxFiles - 2 (room for the
//      current file and the one about to be rotated);
//   3. the rotated files left are gzipped (`<log>.<time>.gz`);
//   4. the current file is renamed `<log>.<YYYYMMDD-hhmmss>` and the runtime
//      asked to reopen its log (CRI ReopenContainerLog: conmon opens a new
//      file at the path); if it cannot, the file is renamed back, to be
//      tried again next round.
// A running container whose log is missing (a reopen that failed after the
// rename, with the agent gone before it could rename back) gets a
// ReopenContainerLog first, as kubelet does. The runtime is reached only
// through the small interface below (the node half's CRI client).

export interface ContainerLogPolicy {
  /** kubelet's containerLogMaxSize, in bytes (default 10Mi). */
  maxSizeBytes: number;
  /** kubelet's containerLogMaxFiles: the current file and the rotated ones, at most (default 5, at least 2). */
  maxFiles: number;
  /** kubelet's containerLogMonitorInterval (default 10s). */
  monitorIntervalMs: number;
}

export const defaultContainerLogPolicy: ContainerLogPolicy = { maxSizeBytes: 10 * 1024 * 1024, maxFiles: 5, monitorIntervalMs: 10000 };

/** What the manager needs of the runtime (CRI ListContainers, ContainerStatus, ReopenContainerLog). */
export interface ContainerLogRuntime {
  runningContainers(): Promise<string[]>;
  /** The container's log path (ContainerStatus.logPath), '' for none. */
  logPath(id: string): Promise<string>;
  reopenLog(id: string): Promise<void>;
}

const compressSuffix = '.gz';
const tmpSuffix = '.tmp';

/** What one rotation does before renaming the current file: the plan, on names alone. */
export interface RotationPlan {
  /** Rotated files (and leftovers) to delete, oldest first. */
  remove: string[];
  /** Rotated files to gzip. */
  compress: string[];
}

/**
 * The plan for the log named `log` given the names in its folder: the
 * rotated files are `<log>.<suffix>`; their suffixes are times, so their
 * names sort oldest first.
 */
export function planRotation(log: string, names: readonly string[], maxFiles: number): RotationPlan {
  const prefix = `${log}.`;
  const rotated = names.filter((n) => n.startsWith(prefix) && n.length > prefix.length);
  const remove: string[] = [];
  const set = new Set(rotated);
  let kept: string[] = [];
  for (const n of rotated) {
    // An interrupted compression (or conmon's own reopen file): never a log to keep.
    if (n.endsWith(tmpSuffix)) remove.push(n);
    // Compressed, then the round ended before the original was removed.
    else if (!n.endsWith(compressSuffix) && set.has(`${n}${compressSuffix}`)) remove.push(n);
    else kept.push(n);
  }
  kept.sort();
  const maxRotated = Math.max(maxFiles - 2, 0);
  const excess = Math.max(kept.length - maxRotated, 0);
  remove.push(...kept.slice(0, excess));
  kept = kept.slice(excess);
  return { remove, compress: kept.filter((n) => !n.endsWith(compressSuffix)) };
}

/** kubelet's rotated-file suffix: the local time, to the second (Go's "20060102-150405"). */
export function rotationSuffix(d: Date): string {
  const p = (n: number): string => String(n).padStart(2, '0');
  return `${d.getFullYear()}${p(d.getMonth() + 1)}${p(d.getDate())}-${p(d.getHours())}${p(d.getMinutes())}${p(d.getSeconds())}`;
}

export interface ContainerLogManagerOptions {
  runtime: ContainerLogRuntime;
  policy: ContainerLogPolicy;
  log: Logger;
  now?: () => Date;
}

export class ContainerLogManager {
  constructor(private readonly o: ContainerLogManagerOptions) {}

  /** Rotates every monitor interval until `signal` ends it; never throws. */
  async run(signal: AbortSignal): Promise<void> {
    while (!signal.aborted) {
      await this.rotateLogs().catch((e: unknown) => this.o.log.warn('cannot rotate container logs', { error: (e as Error).message }));
      await new Promise<void>((resolve) => {
        const t = setTimeout(done, this.o.policy.monitorIntervalMs);
        function done(): void {
          clearTimeout(t);
          signal.removeEventListener('abort', done);
          resolve();
        }
        signal.addEventListener('abort', done);
      });
    }
  }

  /** One round over the running containers; one container's failure does not stop the others. */
  async rotateLogs(): Promise<void> {
    for (const id of await this.o.runtime.runningContainers()) {
      try {
        await this.rotateIfNeeded(id);
      } catch (e: unknown) {
        this.o.log.warn('cannot rotate a container log', { container: id, error: (e as Error).message });
      }
    }
  }

  private async rotateIfNeeded(id: string): Promise<void> {
    const path = await this.o.runtime.logPath(id);
    if (path === '') return;
    let size = await sizeOf(path);
    if (size === undefined) {
      // Lost after a rename whose reopen failed: have the runtime make it again.
      await this.o.runtime.reopenLog(id);
      size = await sizeOf(path);
      if (size === undefined) return;
    }
    if (size < this.o.policy.maxSizeBytes) return;
    await this.rotate(id, path);
  }

  private async rotate(id: string, path: string): Promise<void> {
    const dir = dirname(path);
    const plan = planRotation(basename(path), await readdir(dir), this.o.policy.maxFiles);
    for (const n of plan.remove) await rm(join(dir, n), { force: true });
    for (const n of plan.compress) {
      try {
        await compress(join(dir, n));
      } catch (e: unknown) {
        // The file stays as it is (counted next round); the current one is still rotated.
        this.o.log.warn('cannot compress a rotated container log', { container: id, file: join(dir, n), error: (e as Error).message });
      }
    }
    const rotated = `${path}.${rotationSuffix((this.o.now ?? (() => new Date()))())}`;
    // Two rotations within a second (a short interval and a fast writer): a rename would replace the first.
    if ((await sizeOf(rotated)) !== undefined || (await sizeOf(`${rotated}${compressSuffix}`)) !== undefined) return;
    await rename(path, rotated);
    try {
      await this.o.runtime.reopenLog(id);
    } catch (e: unknown) {
      // Back where the runtime still writes, to be rotated next round.
      await rename(rotated, path).catch((r: unknown) => this.o.log.error('cannot rename a rotated log back; the runtime may have lost it', { container: id, file: rotated, error: (r as Error).message }));
      throw new Error(`reopening the log after rotation: ${(e as Error).message}`);
    }
    this.o.log.debug('rotated a container log', { container: id, file: rotated });
  }
}

/** A removed container's log and every file rotated from it (kubelet's containerLogManager.Clean). */
export async function removeContainerLogs(path: string): Promise<void> {
  const dir = dirname(path);
  const prefix = `${basename(path)}.`;
  const names = await readdir(dir).catch(() => [] as string[]);
  for (const n of [basename(path), ...names.filter((x) => x.startsWith(prefix))]) await rm(join(dir, n), { force: true });
}

async function sizeOf(path: string): Promise<number | undefined> {
  try {
    return (await stat(path)).size;
  } catch (e: unknown) {
    if ((e as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
    throw e;
  }
}

/** `<file>.gz` in its place, written under a temporary name first so a crash leaves no half archive. */
async function compress(file: string): Promise<void> {
  const tmp = `${file}${tmpSuffix}`;
  try {
    await pipeline(createReadStream(file), createGzip(), createWriteStream(tmp, { mode: 0o644 }));
    await rename(tmp, `${file}${compressSuffix}`);
  } finally {
    await rm(tmp, { force: true });
  }
  await rm(file, { force: true });
}
