import { Counter, Gauge, Histogram, type Registry } from 'prom-client';

import type { ContainerStatusJson, PodStatus } from './pod_status.js';

// The node half's metrics, under kubelet's names, types, label names and
// buckets (pkg/kubelet/metrics/metrics.go), so kubelet dashboards and alerts
// work unchanged; and ours, prefixed usernode_. Gauges are read at scrape
// time from the pod worker's in-memory statuses: a scrape makes no CRI call.
// Labels are bounded: operation types, states, phases, the node's name.

/** kubelet's podStartupDurationBuckets. */
export const podStartBuckets = [0.5, 1, 2, 3, 4, 5, 6, 8, 10, 20, 30, 45, 60, 120, 180, 240, 300, 360, 480, 600, 900, 1200, 1800, 2700, 3600];

/** kubelet's runtime operation buckets: ExponentialBuckets(0.005, 2.5, 14), multiplied in turn as Go does, so the le values match to the bit. */
export const runtimeOperationBuckets = exponentialBuckets(0.005, 2.5, 14);

function exponentialBuckets(start: number, factor: number, count: number): number[] {
  const out: number[] = [];
  for (let b = start; out.length < count; b *= factor) out.push(b);
  return out;
}

/** kubelet's operation_type of a CRI method (its instrumented runtime service); the rest are snake_case. */
const operationTypes: Record<string, string> = {
  RunPodSandbox: 'run_podsandbox',
  StopPodSandbox: 'stop_podsandbox',
  RemovePodSandbox: 'remove_podsandbox',
  PodSandboxStatus: 'podsandbox_status',
  ListPodSandbox: 'list_podsandbox',
  PodSandboxStats: 'podsandbox_stats',
  ListPodSandboxStats: 'list_podsandbox_stats',
  UpdateContainerResources: 'update_container',
};

export function operationType(method: string): string {
  return operationTypes[method] ?? method.replace(/([a-z0-9])([A-Z])/g, '$1_$2').toLowerCase();
}

export type PodPhase = PodStatus['phase'];
const phases: readonly PodPhase[] = ['Pending', 'Running', 'Succeeded', 'Failed'];
/** kubelet's container_state values (kubecontainer.State). */
const containerStates = ['created', 'running', 'exited', 'unknown'] as const;

export interface NodeMetrics {
  /** A CRI call of the pod worker finished (PodManagerOptions.onCriCall). */
  criCall(method: string, seconds: number, ok: boolean): void;
  /** A pod first reached Running (PodManagerOptions.onPodRunning); firstSeenMs is when the worker first had it. */
  podRunning(firstSeenMs: number, nowMs: number): void;
  /** Where the pod gauges read from; until set, they read no pods. */
  readPods(statuses: () => Iterable<PodStatus>): void;
}

export function nodeMetrics(registry: Registry, o: { nodeName: string; startedAtMs?: number }): NodeMetrics {
  // A pod the worker adopted from an earlier agent was first seen by that one: its start is not this agent's to time.
  const startedAtMs = o.startedAtMs ?? Date.now();
  let statuses: () => Iterable<PodStatus> = () => [];

  new Gauge({ name: 'kubelet_node_name', help: "The node's name. The count is always 1.", labelNames: ['node'], registers: [registry] }).set({ node: o.nodeName }, 1);

  const operations = new Counter({ name: 'kubelet_runtime_operations_total', help: 'Cumulative number of runtime operations by operation type.', labelNames: ['operation_type'], registers: [registry] });
  const errors = new Counter({ name: 'kubelet_runtime_operations_errors_total', help: 'Cumulative number of runtime operation errors by operation type.', labelNames: ['operation_type'], registers: [registry] });
  const duration = new Histogram({
    name: 'kubelet_runtime_operations_duration_seconds',
    help: 'Duration in seconds of runtime operations. Broken down by operation type.',
    labelNames: ['operation_type'],
    buckets: runtimeOperationBuckets,
    registers: [registry],
  });
  const podStart = new Histogram({
    name: 'kubelet_pod_start_duration_seconds',
    help: 'Duration in seconds from kubelet seeing a pod for the first time to the pod starting to run',
    buckets: podStartBuckets,
    registers: [registry],
  });

  new Gauge({
    name: 'kubelet_running_pods',
    help: 'Number of pods that have a running pod sandbox',
    registers: [registry],
    collect() {
      let n = 0;
      for (const s of statuses()) if (s.conditions.some((c) => c.type === 'PodReadyToStartContainers' && c.status === 'True')) n++;
      this.set(n);
    },
  });
  new Gauge({
    name: 'kubelet_running_containers',
    help: 'Number of containers currently running',
    labelNames: ['container_state'],
    registers: [registry],
    collect() {
      const count = new Map<string, number>(containerStates.map((s) => [s, 0]));
      for (const s of statuses()) {
        for (const c of [...s.initContainerStatuses, ...s.containerStatuses]) {
          const state = runtimeState(c);
          if (state) count.set(state, (count.get(state) ?? 0) + 1);
        }
      }
      for (const [container_state, n] of count) this.set({ container_state }, n);
    },
  });
  new Gauge({
    name: 'usernode_pods',
    help: 'Pods the node runs, by phase.',
    labelNames: ['phase'],
    registers: [registry],
    collect() {
      const count = new Map<string, number>(phases.map((p) => [p, 0]));
      for (const s of statuses()) count.set(s.phase, (count.get(s.phase) ?? 0) + 1);
      for (const [phase, n] of count) this.set({ phase }, n);
    },
  });

  return {
    criCall: (method, seconds, ok) => {
      const operation_type = operationType(method);
      operations.inc({ operation_type });
      duration.observe({ operation_type }, seconds);
      if (!ok) errors.inc({ operation_type });
    },
    podRunning: (firstSeenMs, nowMs) => {
      if (firstSeenMs >= startedAtMs) podStart.observe(Math.max(0, nowMs - firstSeenMs) / 1000);
    },
    readPods: (f) => {
      statuses = f;
    },
  };
}

/**
 * The state of the container the runtime holds for a status, as kubelet's
 * runtime cache counts it: none while no container was created yet.
 */
function runtimeState(c: ContainerStatusJson): (typeof containerStates)[number] | undefined {
  if ('running' in c.state) return 'running';
  if ('terminated' in c.state) return 'exited';
  if (!c.containerID) return undefined;
  // Waiting with a container: a restart's back-off (the last one exited) or created but not started.
  return 'terminated' in c.lastState ? 'exited' : 'created';
}
