// Host ports: a port on the user's host forwarded into the node namespace,
// to a pod's address (DESIGN.md: hostPort → rootlesskit port API → pod).

export interface PortForward {
  id: number;
  protocol: 'tcp' | 'udp' | 'sctp';
  hostIP: string;
  hostPort: number;
  childIP: string;
  childPort: number;
}

export interface PortManager {
  /** Throws AlreadyExists naming the port when the host already uses it. */
  add(p: Omit<PortForward, 'id'>): Promise<PortForward>;
  list(): Promise<PortForward[]>;
  /** Idempotent: a forward that is gone is success. */
  remove(id: number): Promise<void>;
}
