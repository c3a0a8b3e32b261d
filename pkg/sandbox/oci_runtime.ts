// The container runtime and monitor, behind small interfaces so unit tests
// use fakes and only cmd/agent picks the drivers (runc.ts, conmon.ts).

export interface RuntimeState {
  status: 'creating' | 'created' | 'running' | 'paused' | 'stopped';
  pid: number;
}

export interface OciRuntime {
  /** undefined when the runtime does not know the container. */
  state(id: string): Promise<RuntimeState | undefined>;
  start(id: string): Promise<void>;
  kill(id: string, signal: string, all?: boolean): Promise<void>;
  /** Idempotent: a container the runtime does not know is success. */
  delete(id: string, force: boolean): Promise<void>;
  /** Applies OCI LinuxResources to the container's cgroup (runc update). */
  update(id: string, resources: object): Promise<void>;
}

export interface MonitorCreate {
  id: string;
  name: string;
  bundle: string;
  logPath: string;
  exitDir: string;
  socketDir: string;
  terminal: boolean;
  stdin: boolean;
  stdinOnce: boolean;
}

export interface ContainerMonitor {
  /** Creates the container (not started) under a monitor that outlives the agent; resolves with its pid. */
  create(o: MonitorCreate): Promise<{ pid: number }>;
  /**
   * Has the monitor of the container in `bundle` close and reopen its log
   * file (after log rotation moved it away); resolves once `logPath` exists
   * again. FailedPrecondition when no monitor holds the container any more.
   */
  reopenLog(bundle: string, logPath: string): Promise<void>;
  /** Sets the terminal size of a tty container (attach). */
  resizeTerminal(bundle: string, width: number, height: number): Promise<void>;
  /**
   * Whether the monitor of container `id` (bundle `bundle`) still runs: when
   * it is gone no exit file will ever come, and the container's state must be
   * asked of the OCI runtime (pkg/cri/recover.ts). Absent: assumed alive.
   */
  alive?(bundle: string, id: string): Promise<boolean>;
}
