import type { PodManifest } from './pod_manifest.js';
import type { QosClass } from './pod_resources.js';

// core/v1 PodStatus as the worker reports it (JSON, as the status subresource
// takes it), and kubelet's rules for the pod's phase and conditions
// (kubelet_pods.go getPhase, status/generate.go).

export type ContainerStateJson =
  | { waiting: { reason: string; message?: string } }
  | { running: { startedAt: string } }
  | { terminated: { exitCode: number; signal?: number; reason: string; message?: string; startedAt: string; finishedAt: string; containerID: string } };

export interface ContainerStatusJson {
  name: string;
  state: ContainerStateJson;
  lastState: ContainerStateJson | Record<string, never>;
  ready: boolean;
  started: boolean;
  restartCount: number;
  image: string;
  imageID: string;
  containerID?: string;
}

export type PodConditionType = 'PodReadyToStartContainers' | 'Initialized' | 'ContainersReady' | 'Ready';

export interface PodConditionJson {
  type: PodConditionType;
  status: 'True' | 'False';
  lastProbeTime: null;
  lastTransitionTime: string;
  reason?: string;
  message?: string;
}

export interface PodStatus {
  phase: 'Pending' | 'Running' | 'Succeeded' | 'Failed';
  conditions: PodConditionJson[];
  containerStatuses: ContainerStatusJson[];
  initContainerStatuses: ContainerStatusJson[];
  podIP?: string;
  podIPs?: Array<{ ip: string }>;
  hostIP?: string;
  hostIPs?: Array<{ ip: string }>;
  startTime?: string;
  qosClass: QosClass;
  reason?: string;
  message?: string;
}

/** metav1.Time: RFC 3339 to the second. */
export const apiTime = (ms: number): string => new Date(ms).toISOString().replace(/\.\d+Z$/, 'Z');

const terminated = (s: ContainerStatusJson['state'] | ContainerStatusJson['lastState']): { exitCode: number } | undefined => ('terminated' in s ? s.terminated : undefined);

/**
 * The pod's phase from its container statuses (kubelet's getPhase). `terminal`
 * is a pod the worker has stopped for good (deleted): it ends Succeeded or
 * Failed whatever its restart policy.
 */
export function podPhase(pod: PodManifest, init: readonly ContainerStatusJson[], app: readonly ContainerStatusJson[], terminal: boolean): PodStatus['phase'] {
  let pendingInit = 0;
  let failedInit = 0;
  const sidecars = new Set(pod.initContainers.filter((c) => c.restartPolicy === 'Always').map((c) => c.name));
  for (const s of init) {
    if (sidecars.has(s.name)) {
      if (!s.started) pendingInit++;
      continue;
    }
    const t = terminated(s.state);
    if (t) {
      if (t.exitCode !== 0) failedInit++;
    }
    else if ('waiting' in s.state && terminated(s.lastState)?.exitCode) failedInit++;
    else pendingInit++;
  }
  let running = 0;
  let waiting = 0;
  let stopped = 0;
  let succeeded = 0;
  for (const s of app) {
    const t = terminated(s.state);
    if ('running' in s.state) running++;
    else if (t) {
      stopped++;
      if (t.exitCode === 0) succeeded++;
    } else if (terminated(s.lastState)) stopped++;
    else waiting++;
  }
  if (failedInit > 0 && pod.restartPolicy === 'Never') return 'Failed';
  if (pendingInit > 0 || failedInit > 0) return terminal ? 'Failed' : 'Pending';
  if (waiting > 0) return terminal ? 'Failed' : 'Pending';
  if (running > 0) return terminal ? 'Failed' : 'Running';
  if (stopped > 0) {
    if (terminal) return stopped === succeeded ? 'Succeeded' : 'Failed';
    if (pod.restartPolicy === 'Always') return 'Running';
    if (stopped === succeeded) return 'Succeeded';
    if (pod.restartPolicy === 'Never') return 'Failed';
    return 'Running';
  }
  return 'Pending';
}

/** The four pod conditions; `previous` keeps each one's lastTransitionTime while its status holds. */
export function podConditions(
  pod: PodManifest,
  s: { sandboxReady: boolean; phase: PodStatus['phase']; init: readonly ContainerStatusJson[]; app: readonly ContainerStatusJson[] },
  previous: readonly PodConditionJson[],
  nowMs: number,
): PodConditionJson[] {
  const sidecars = new Set(pod.initContainers.filter((c) => c.restartPolicy === 'Always').map((c) => c.name));
  const done = s.phase === 'Succeeded' || s.phase === 'Failed';
  const incompleteInit = s.init.filter((c) => (sidecars.has(c.name) ? !c.started : terminated(c.state)?.exitCode !== 0)).map((c) => c.name);
  // Sidecars count toward readiness as app containers do.
  const unready = [...s.init.filter((c) => sidecars.has(c.name)), ...s.app].filter((c) => !c.ready).map((c) => c.name);
  const make = (type: PodConditionType, ok: boolean, reason?: string, message?: string): PodConditionJson => {
    const status = ok ? 'True' : 'False';
    const before = previous.find((c) => c.type === type);
    return {
      type,
      status,
      lastProbeTime: null,
      lastTransitionTime: before && before.status === status ? before.lastTransitionTime : apiTime(nowMs),
      ...(reason ? { reason } : {}),
      ...(message ? { message } : {}),
    };
  };
  const initialized = incompleteInit.length === 0 || (done && s.init.length > 0 && s.app.some((c) => !('waiting' in c.state) || terminated(c.lastState)));
  const ready = unready.length === 0 && !done;
  const notReady = (): [string, string] => (done ? ['PodCompleted', ''] : ['ContainersNotReady', `containers with unready status: [${unready.join(' ')}]`]);
  return [
    make('PodReadyToStartContainers', s.sandboxReady && !done),
    make('Initialized', initialized, ...(initialized ? (done && s.init.length > 0 ? ['PodCompleted'] : []) : ['ContainersNotInitialized', `containers with incomplete status: [${incompleteInit.join(' ')}]`])),
    make('ContainersReady', ready, ...(ready ? [] : notReady())),
    make('Ready', ready, ...(ready ? [] : notReady())),
  ];
}

/**
 * The status of a pod the node will not run (kubelet's admission rejection:
 * phase Failed, a reason, "Pod was rejected: …"), for the API source to post
 * when a pod bound to this node cannot be parsed or carried out.
 */
export function rejectedPodStatus(reason: string, message: string, nowMs: number, qosClass: QosClass = 'BestEffort'): PodStatus {
  return { phase: 'Failed', reason, message: `Pod was rejected: ${message}`, conditions: [], containerStatuses: [], initContainerStatuses: [], startTime: apiTime(nowMs), qosClass };
}
