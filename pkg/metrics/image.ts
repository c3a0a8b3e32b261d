import { Counter, Gauge, Histogram, type Registry } from 'prom-client';

// Image pulls: how many, how many bytes came over the network, how long, and
// how many are running now (pull progress for a dashboard). No image names as
// labels: they are unbounded.

export interface ImageMetrics {
  pullStarted(): void;
  pullFinished(e: { bytes: number; seconds: number; ok: boolean }): void;
  bytesFetched(n: number): void;
}

export function imageMetrics(registry: Registry): ImageMetrics {
  const pulls = new Counter({ name: 'usernode_image_pulls_total', help: 'Image pulls finished, by result (success or failure).', labelNames: ['result'], registers: [registry] });
  const bytes = new Counter({ name: 'usernode_image_pull_bytes_total', help: 'Bytes of image content fetched from registries.', registers: [registry] });
  const duration = new Histogram({
    name: 'usernode_image_pull_duration_seconds',
    help: 'Time to pull and unpack an image.',
    buckets: [0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600],
    registers: [registry],
  });
  const inProgress = new Gauge({ name: 'usernode_image_pulls_in_progress', help: 'Image pulls running now.', registers: [registry] });
  return {
    pullStarted: () => inProgress.inc(),
    pullFinished: (e) => {
      inProgress.dec();
      pulls.inc({ result: e.ok ? 'success' : 'failure' });
      if (e.ok) duration.observe(e.seconds);
    },
    bytesFetched: (n) => bytes.inc(n),
  };
}
