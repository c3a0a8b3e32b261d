import type { CriClients } from '../../proto/client.js';
import { criCall } from './kubelet_pods.js';

// The kubelet API's two derived expositions:
//  /metrics/cadvisor — the runtime's ListPodSandboxMetrics under the
//    descriptors of ListMetricDescriptors, as kubelet's CRI metrics collector
//    re-exports them in place of cadvisor (names, labels and values are the
//    runtime's; this only renders them);
//  /metrics/resource — kubelet's resource metrics (what metrics-server reads)
//    from the Summary: node, pod and container CPU and working set, and
//    container start times.

type Summary = {
  node: { cpu?: { usageCoreNanoSeconds?: number; time?: string }; memory?: { workingSetBytes?: number; time?: string } };
  pods?: Array<{
    podRef: { name: string; namespace: string };
    cpu?: { usageCoreNanoSeconds?: number; time?: string };
    memory?: { workingSetBytes?: number; time?: string };
    containers?: Array<{ name: string; startTime?: string; cpu?: { usageCoreNanoSeconds?: number; time?: string }; memory?: { workingSetBytes?: number; time?: string } }>;
  }>;
};

const escape = (v: string): string => v.replace(/\\/g, '\\\\').replace(/\n/g, '\\n').replace(/"/g, '\\"');
const labels = (l: Record<string, string>): string => {
  const parts = Object.entries(l).map(([k, v]) => `${k}="${escape(v)}"`);
  return parts.length > 0 ? `{${parts.join(',')}}` : '';
};

interface Descriptor {
  name: string;
  help: string;
  labelKeys: string[];
}
interface Metric {
  name: string;
  timestamp: string;
  metricType: 'COUNTER' | 'GAUGE';
  labelValues: string[];
  value?: { value: string };
}

export async function cadvisorExposition(cri: CriClients): Promise<string> {
  const [d, m] = await Promise.all([
    criCall<{ descriptors: Descriptor[] }>(cri, 'runtime', 'ListMetricDescriptors', {}),
    criCall<{ podMetrics: Array<{ metrics: Metric[]; containerMetrics: Array<{ metrics: Metric[] }> }> }>(cri, 'runtime', 'ListPodSandboxMetrics', {}),
  ]);
  const byName = new Map<string, { type: string; lines: string[] }>();
  const descriptors = new Map(d.descriptors.map((x) => [x.name, x]));
  for (const pod of m.podMetrics) {
    for (const metric of [...pod.metrics, ...pod.containerMetrics.flatMap((c) => c.metrics)]) {
      const desc = descriptors.get(metric.name);
      if (!desc) continue;
      const entry = byName.get(metric.name) ?? { type: metric.metricType === 'COUNTER' ? 'counter' : 'gauge', lines: [] };
      byName.set(metric.name, entry);
      const l = Object.fromEntries(desc.labelKeys.map((k, i) => [k, metric.labelValues[i] ?? '']));
      const ms = Number(BigInt(metric.timestamp || '0') / 1000000n);
      entry.lines.push(`${metric.name}${labels(l)} ${metric.value?.value ?? '0'}${ms > 0 ? ` ${ms}` : ''}`);
    }
  }
  let out = '';
  for (const [name, e] of [...byName].sort(([a], [b]) => a.localeCompare(b))) {
    out += `# HELP ${name} ${descriptors.get(name)!.help}\n# TYPE ${name} ${e.type}\n${e.lines.join('\n')}\n`;
  }
  return out;
}

export function resourceExposition(s: Summary): string {
  const fam: Record<string, { help: string; type: 'counter' | 'gauge'; lines: string[] }> = {
    node_cpu_usage_seconds_total: { help: 'Cumulative cpu time consumed by the node in core-seconds', type: 'counter', lines: [] },
    node_memory_working_set_bytes: { help: 'Current working set of the node in bytes', type: 'gauge', lines: [] },
    pod_cpu_usage_seconds_total: { help: 'Cumulative cpu time consumed by the pod in core-seconds', type: 'counter', lines: [] },
    pod_memory_working_set_bytes: { help: 'Current working set of the pod in bytes', type: 'gauge', lines: [] },
    container_cpu_usage_seconds_total: { help: 'Cumulative cpu time consumed by the container in core-seconds', type: 'counter', lines: [] },
    container_memory_working_set_bytes: { help: 'Current working set of the container in bytes', type: 'gauge', lines: [] },
    container_start_time_seconds: { help: 'Start time of the container since unix epoch in seconds', type: 'gauge', lines: [] },
    scrape_error: { help: '1 if there was an error while getting container metrics, 0 otherwise', type: 'gauge', lines: [] },
  };
  const at = (t?: string): string => (t ? ` ${Date.parse(t)}` : '');
  const add = (name: keyof typeof fam, l: Record<string, string>, v: number | undefined, t?: string): void => {
    if (v !== undefined) fam[name]!.lines.push(`${name}${labels(l)} ${v}${at(t)}`);
  };
  add('node_cpu_usage_seconds_total', {}, s.node.cpu?.usageCoreNanoSeconds === undefined ? undefined : s.node.cpu.usageCoreNanoSeconds / 1e9, s.node.cpu?.time);
  add('node_memory_working_set_bytes', {}, s.node.memory?.workingSetBytes, s.node.memory?.time);
  for (const p of s.pods ?? []) {
    const pl = { namespace: p.podRef.namespace, pod: p.podRef.name };
    add('pod_cpu_usage_seconds_total', pl, p.cpu?.usageCoreNanoSeconds === undefined ? undefined : p.cpu.usageCoreNanoSeconds / 1e9, p.cpu?.time);
    add('pod_memory_working_set_bytes', pl, p.memory?.workingSetBytes, p.memory?.time);
    for (const c of p.containers ?? []) {
      const cl = { container: c.name, ...pl };
      add('container_cpu_usage_seconds_total', cl, c.cpu?.usageCoreNanoSeconds === undefined ? undefined : c.cpu.usageCoreNanoSeconds / 1e9, c.cpu?.time);
      add('container_memory_working_set_bytes', cl, c.memory?.workingSetBytes, c.memory?.time);
      add('container_start_time_seconds', cl, c.startTime ? Date.parse(c.startTime) / 1000 : undefined);
    }
  }
  add('scrape_error', {}, 0);
  return Object.entries(fam)
    .map(([name, f]) => `# HELP ${name} [STABLE] ${f.help}\n# TYPE ${name} ${f.type}\n${f.lines.join('\n')}${f.lines.length > 0 ? '\n' : ''}`)
    .join('');
}
