import type { ListMetricDescriptorsResponse } from '../../proto/types.js';
import { baseLabelKeys, containerMetrics, networkMetrics } from './cadvisor_metrics.js';

// ListMetricDescriptors: every metric ListPodSandboxMetrics may send, with its
// label keys in the order of the values (cadvisor_metrics.ts).
export async function listMetricDescriptors(): Promise<ListMetricDescriptorsResponse> {
  return {
    descriptors: [...containerMetrics, ...networkMetrics].map((m) => ({ name: m.name, help: m.help, labelKeys: [...baseLabelKeys, ...m.labels] })),
  };
}
