// What the pod worker asks of a prober (kubelet's prober package): run one
// handler of a probe or a lifecycle hook against one container and say how it
// went. The exec kind goes through the CRI (prober_exec.ts); the network kinds
// (httpGet, tcpSocket, grpc) dial the pod's IP from the node half.

export interface HttpHeader {
  name: string;
  value: string;
}

/** A probe's or hook's handler as the pod spec gives it; named ports are resolved to numbers when the pod is parsed. */
export type ProbeSpec =
  | { kind: 'exec'; command: string[] }
  | { kind: 'httpGet'; path: string; port: number; host?: string; scheme: 'HTTP' | 'HTTPS'; httpHeaders: HttpHeader[] }
  | { kind: 'tcpSocket'; port: number; host?: string }
  | { kind: 'grpc'; port: number; service?: string };

export interface ProbeTarget {
  containerId: string;
  podIP: string;
  timeoutMs: number;
}

export interface ProbeResult {
  result: 'success' | 'failure';
  /** What the handler said (exec's output, the HTTP status, the dial error): it goes into the Unhealthy event. */
  output: string;
  /**
   * kubelet's probe.Warning: an httpGet that ended on a redirect it did not
   * follow (another host). It counts as success; kubelet adds a ProbeWarning Event.
   */
  warning?: boolean;
}

export interface Prober {
  /**
   * A failed check (a timeout, an error status, a refused dial) resolves as
   * 'failure' with the reason as output; a rejection means the prober itself
   * could not probe (its worker gone, the runtime away), which is no result.
   */
  run(p: ProbeSpec, t: ProbeTarget): Promise<ProbeResult>;
  close?(): Promise<void>;
}

/** Which registered prober handles which kind: the entry point chooses, the worker only sees one Prober. */
export function proberByKind(byKind: Partial<Record<ProbeSpec['kind'], Prober>>): Prober {
  return {
    run: (p, t) => byKind[p.kind]?.run(p, t) ?? Promise.resolve({ result: 'failure', output: `${p.kind} probes are not supported by this node yet` }),
  };
}
