import { watch, type FSWatcher } from 'node:fs';
import { stat } from 'node:fs/promises';
import { join } from 'node:path';

import type { StopContainerRequest__Output, StopContainerResponse } from '../../proto/types.js';
import { invalidArgument } from '../errdefs/errors.js';
import type { ContainerRecord } from '../sandbox/container_store.js';
import { maxTimerMs } from '../sandbox/runc_exec.js';
import { type ContainerRuntime, refresh } from './containers.js';
import type { CriContext } from './context.js';

// StopContainer: the image's STOPSIGNAL (or SIGTERM), SIGKILL after the
// timeout. Stopping a stopped or missing container is success (api.proto).
export async function stopContainer(req: StopContainerRequest__Output, ctx: CriContext, signal?: AbortSignal): Promise<StopContainerResponse> {
  if (req.containerId === '') throw invalidArgument('container_id is required', { field: 'container_id' });
  const r = ctx.containers.store.find(req.containerId);
  if (!r) return {};
  await stopRecord(r, Number(req.timeout), ctx.containers, signal);
  return {};
}

/** `signal`: the caller gave up (cancel, deadline); the grace period ends there and the container is killed, so it still ends stopped. */
export async function stopRecord(r0: ContainerRecord, timeoutSeconds: number, c: ContainerRuntime, signal?: AbortSignal): Promise<ContainerRecord> {
  let r = await refresh(r0, c);
  if (r.state === 'CONTAINER_EXITED') return r;
  if (r.state === 'CONTAINER_CREATED') {
    // Never started: nothing runs the user's process; end the created one.
    await c.runtime.kill(r.id, 'SIGKILL');
  } else {
    if (timeoutSeconds > 0) {
      await c.runtime.kill(r.id, r.stopSignal || 'SIGTERM');
      await waitForExit(r.id, c, timeoutSeconds * 1000, signal);
    }
    // Not --all: without a cgroup of its own runc cannot find the container's other processes (it errors); its init dying ends the pid namespace.
    await c.runtime.kill(r.id, 'SIGKILL');
  }
  await waitForExit(r.id, c, 10000);
  r = await refresh(r, c);
  if (r.state !== 'CONTAINER_EXITED') {
    // Created-but-never-started containers exit without an exit file from conmon on some versions.
    const finishedAt = String(BigInt(Date.now()) * 1000000n);
    r = (await c.store.modify(r.id, (cur) => (cur.state === 'CONTAINER_EXITED' ? cur : { ...cur, state: 'CONTAINER_EXITED', exitCode: 137, reason: 'Error', finishedAt }))) ?? r;
  }
  return r;
}

/** Until conmon writes the container's exit file (inotify on the exit folder, a slow poll behind it), or `ms`. */
async function waitForExit(id: string, c: ContainerRuntime, ms: number, signal?: AbortSignal): Promise<void> {
  const file = join(c.exitDir, id);
  const present = (): Promise<boolean> => stat(file).then(
    () => true,
    () => false,
  );
  if ((await present()) || signal?.aborted) return;
  await new Promise<void>((resolve) => {
    let watcher: FSWatcher | undefined;
    const finish = (): void => {
      clearTimeout(timer);
      clearInterval(poll);
      watcher?.close();
      signal?.removeEventListener('abort', finish);
      resolve();
    };
    signal?.addEventListener('abort', finish, { once: true });
    const check = (): void => void present().then((yes) => yes && finish());
    // Past maxTimerMs Node fires a timer at once: a timeout that long is waited for as long as a timer can.
    const timer = setTimeout(finish, Math.min(ms, maxTimerMs));
    const poll = setInterval(check, 250);
    try {
      watcher = watch(c.exitDir, { persistent: false }, (_event, name) => name === id && check());
      watcher.on('error', () => undefined);
    } catch {
      // The poll finds it.
    }
    // Written between the first look and the watch.
    check();
  });
}
