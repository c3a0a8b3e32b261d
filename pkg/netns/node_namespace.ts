// The node namespace: the user + network + mount namespaces the runtime half
// and every pod live in (DESIGN.md, "The namespaces"). A driver creates it,
// finds a live one left by an earlier agent, and tears it down. Only
// cmd/agent picks the driver.

export interface NodeNamespace {
  /** Process whose namespaces are the node namespace; `nsenter -t` targets it. */
  holderPid: number;
  /** The process that owns the userspace network and the port driver. */
  parentPid: number;
  /** Namespace identities as /proc/<pid>/ns/* show them, e.g. "net:[4026532301]". */
  userNs: string;
  netNs: string;
  mntNs: string;
  /** The port driver's API socket, kept for port forwarding. */
  portApiSocket: string;
  /** Driver state folder (rootlesskit's --state-dir). */
  stateDir: string;
  /** True when this call created the namespace, false when it found a live one. */
  created: boolean;
}

export interface TeardownReport {
  /** What was stopped, one line each, for the log and `usernode stop`. */
  stopped: string[];
  /** Processes still alive after teardown (should be empty). */
  survivors: number[];
}

export interface NodeNamespaceDriver {
  readonly name: string;
  /** A live node namespace, or undefined. Stale state is removed. */
  find(): Promise<NodeNamespace | undefined>;
  /** Reuse the live node namespace or create one. */
  ensure(): Promise<NodeNamespace>;
  /**
   * Stops every process inside the node namespace and the namespace itself,
   * and removes the driver state. Idempotent: nothing running is success.
   */
  teardown(): Promise<TeardownReport>;
}

/** argv that runs `command` inside the node namespace, as `usernode enter` does. */
export function enterArgv(nsenter: string, ns: NodeNamespace, command: readonly string[], cwd?: string): string[] {
  const argv = [nsenter, '--preserve-credentials', '-U', '-m', '-n', '-t', String(ns.holderPid)];
  if (cwd !== undefined) argv.push(`--wd=${cwd}`);
  argv.push('--', ...command);
  return argv;
}
