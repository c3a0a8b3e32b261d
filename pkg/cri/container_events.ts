import type { ContainerEventResponse, GetEventsRequest__Output } from '../../proto/types.js';
import { unavailable } from '../errdefs/errors.js';
import type { ContainerRecord } from '../sandbox/container_store.js';
import type { SandboxRecord } from '../sandbox/sandbox_store.js';
import { containerStatusOf } from './container_status.js';
import { nowNs } from './containers.js';
import type { CriContext } from './context.js';
import type { ServerStream } from './instrumented.js';
import { sandboxStatusOf } from './sandbox_status.js';

// GetContainerEvents (kubelet's evented PLEG): every subscriber gets each
// lifecycle change of every container and pod sandbox, as containerd sends
// them (internal/cri/server: generateAndSendContainerEvent): CREATED,
// STARTED, STOPPED, DELETED with the pod's status and the statuses of all its
// containers. A pod sandbox's own events carry container_id = its id
// (CREATED and STARTED when it is made, STOPPED when it goes NOTREADY).
//
// Events come from the record stores, after the change is on disk, so every
// path that changes a record is covered: the RPCs, and a container exiting by
// itself, which the exit watcher (exit_watcher.ts) notices and records.

type EventType = NonNullable<ContainerEventResponse['containerEventType']>;

export type ContainerEvent = ContainerEventResponse;

export async function getContainerEvents(_req: GetEventsRequest__Output, ctx: CriContext, stream: ServerStream): Promise<void> {
  const sub = ctx.events.subscribe();
  const stop = (): void => sub.close();
  stream.signal.addEventListener('abort', stop, { once: true });
  try {
    for await (const event of sub) {
      // A client that stopped reading leaves send() waiting; being dropped by the bus ends the wait.
      const dropped = await Promise.race([stream.send(event).then(() => undefined), sub.ended]);
      if (dropped) throw dropped;
    }
  } finally {
    stream.signal.removeEventListener('abort', stop);
    sub.close();
  }
  if (!stream.signal.aborted) throw unavailable('container events subscription closed by server');
}

/** Publishes the events of every record change on ctx.events; returns the function that stops it. */
export function publishLifecycleEvents(ctx: CriContext): () => void {
  const publish = (containerId: string, sandboxId: string, type: EventType, sandbox?: SandboxRecord): void => {
    // Nobody listening (no kubelet with evented PLEG): the statuses are not built at all.
    if (ctx.events.size === 0) return;
    try {
      const pod = sandbox ?? ctx.pods.store.find(sandboxId);
      ctx.events.publish({
        containerId,
        containerEventType: type,
        createdAt: nowNs(),
        podSandboxStatus: pod && pod.id === sandboxId ? sandboxStatusOf(pod) : null,
        containersStatuses: ctx.containers.store
          .list()
          .filter((c) => c.sandboxId === sandboxId)
          .map(containerStatusOf),
      });
    } catch (e: unknown) {
      ctx.log.error('container event not sent', { id: containerId.slice(0, 12), type, error: (e as Error).message });
    }
  };
  const offContainers = ctx.containers.store.onChange((prev, next) => {
    const r = (next ?? prev)!;
    for (const type of containerEventTypes(prev, next)) publish(r.id, r.sandboxId, type);
  });
  const offPods = ctx.pods.store.onChange((prev, next) => {
    const r = (next ?? prev)!;
    // A removed pod's event still carries its last status, as containerd sends it before forgetting the pod.
    for (const type of sandboxEventTypes(prev, next)) publish(r.id, r.id, type, next ?? prev);
  });
  return () => {
    offContainers();
    offPods();
  };
}

export function containerEventTypes(prev: ContainerRecord | undefined, next: ContainerRecord | undefined): EventType[] {
  if (!prev) return next ? ['CONTAINER_CREATED_EVENT'] : [];
  if (!next) return ['CONTAINER_DELETED_EVENT'];
  const out: EventType[] = [];
  if (prev.state !== 'CONTAINER_RUNNING' && next.state === 'CONTAINER_RUNNING') out.push('CONTAINER_STARTED_EVENT');
  if (prev.state !== 'CONTAINER_EXITED' && next.state === 'CONTAINER_EXITED') out.push('CONTAINER_STOPPED_EVENT');
  return out;
}

export function sandboxEventTypes(prev: SandboxRecord | undefined, next: SandboxRecord | undefined): EventType[] {
  if (!prev) return next ? (next.state === 'SANDBOX_READY' ? ['CONTAINER_CREATED_EVENT', 'CONTAINER_STARTED_EVENT'] : ['CONTAINER_CREATED_EVENT']) : [];
  if (!next) return ['CONTAINER_DELETED_EVENT'];
  return prev.state === 'SANDBOX_READY' && next.state === 'SANDBOX_NOTREADY' ? ['CONTAINER_STOPPED_EVENT'] : [];
}
