import { Counter, Histogram, type Registry } from 'prom-client';

// The CRI server's metrics: every RPC by service, method and gRPC code.
// Labels are bounded: method names and codes, never an id.

export const criBuckets = [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60];

export interface CriMetrics {
  observe(service: string, method: string, grpcCode: number, seconds: number): void;
}

const codeNames = ['OK', 'CANCELLED', 'UNKNOWN', 'INVALID_ARGUMENT', 'DEADLINE_EXCEEDED', 'NOT_FOUND', 'ALREADY_EXISTS', 'PERMISSION_DENIED', 'RESOURCE_EXHAUSTED', 'FAILED_PRECONDITION', 'ABORTED', 'OUT_OF_RANGE', 'UNIMPLEMENTED', 'INTERNAL', 'UNAVAILABLE', 'DATA_LOSS', 'UNAUTHENTICATED'];

export function criMetrics(registry: Registry): CriMetrics {
  const total = new Counter({
    name: 'usernode_cri_operations_total',
    help: 'CRI RPCs served, by service, method and gRPC status code.',
    labelNames: ['service', 'method', 'code'],
    registers: [registry],
  });
  const duration = new Histogram({
    name: 'usernode_cri_operation_duration_seconds',
    help: 'Time to serve a CRI RPC, by service and method.',
    labelNames: ['service', 'method'],
    buckets: criBuckets,
    registers: [registry],
  });
  return {
    observe: (service, method, grpcCode, seconds) => {
      total.inc({ service, method, code: codeNames[grpcCode] ?? String(grpcCode) });
      duration.observe({ service, method }, seconds);
    },
  };
}
