import type { Readable, Writable } from 'node:stream';

// Kubernetes' remote command protocol (exec and attach), the part both
// transports share: the versions a client may ask for, the streams each
// expects, and the final status on the error stream — text up to v3, a
// metav1.Status from v4 on (the exit code as a cause of reason
// NonZeroExitCode). v5 adds only the WebSocket close signal.

export const remoteCommandVersions = ['v5.channel.k8s.io', 'v4.channel.k8s.io', 'v3.channel.k8s.io', 'v2.channel.k8s.io', 'channel.k8s.io'] as const;
export type RemoteCommandVersion = (typeof remoteCommandVersions)[number];

/** The first of the client's versions (in its order of preference) this server speaks. */
export function negotiate<V extends string>(offered: readonly string[], supported: readonly V[]): V | undefined {
  for (const o of offered) {
    const v = supported.find((s) => s === o.trim());
    if (v) return v;
  }
  return undefined;
}

/** What the request asked for: which streams the client opens. */
export interface StreamOptions {
  stdin: boolean;
  stdout: boolean;
  stderr: boolean;
  tty: boolean;
}

export interface TerminalSize {
  width: number;
  height: number;
}

/** One exec or attach session, whatever the transport. */
export interface RemoteCommandSession {
  version: RemoteCommandVersion;
  stdin?: Readable;
  stdout?: Writable;
  stderr?: Writable;
  /** Terminal sizes the client sends (tty sessions). */
  resize: ResizeChannel;
  /** Resolves when the client is gone (closed the connection, or it broke). */
  gone: Promise<void>;
  /** Writes the final status and ends the session. */
  finish(outcome: Outcome): Promise<void>;
}

/**
 * The client's terminal sizes. Its first comes as soon as it connects, before
 * the command runs: a listener added later is called at once with the latest.
 */
export class ResizeChannel {
  private latest: TerminalSize | undefined;
  private readonly listeners: Array<(s: TerminalSize) => void> = [];

  push(size: TerminalSize): void {
    this.latest = size;
    for (const l of this.listeners) l(size);
  }

  listen(l: (s: TerminalSize) => void): void {
    this.listeners.push(l);
    if (this.latest) l(this.latest);
  }
}

export type Outcome = { exitCode: number } | { error: string };

/** The error stream's bytes for an outcome in `version` (undefined: nothing is written, success before v4). */
export function statusMessage(version: RemoteCommandVersion, outcome: Outcome): Buffer | undefined {
  const v4 = version === 'v4.channel.k8s.io' || version === 'v5.channel.k8s.io';
  if ('error' in outcome) {
    return Buffer.from(v4 ? JSON.stringify({ metadata: {}, status: 'Failure', message: outcome.error, reason: 'InternalError', code: 500 }) : outcome.error);
  }
  if (outcome.exitCode === 0) return v4 ? Buffer.from(JSON.stringify({ metadata: {}, status: 'Success' })) : undefined;
  if (!v4) return Buffer.from(`command terminated with non-zero exit code: ${outcome.exitCode}`);
  return Buffer.from(
    JSON.stringify({
      metadata: {},
      status: 'Failure',
      message: `command terminated with non-zero exit code: error executing command, exit status ${outcome.exitCode}`,
      reason: 'NonZeroExitCode',
      details: { causes: [{ reason: 'ExitCode', message: String(outcome.exitCode) }] },
    }),
  );
}

/** A resize message (JSON {"Width":…,"Height":…}); undefined if it is not one. */
export function parseResize(data: Buffer): TerminalSize | undefined {
  try {
    const o = JSON.parse(data.toString()) as { Width?: unknown; Height?: unknown };
    if (typeof o.Width === 'number' && typeof o.Height === 'number' && o.Width >= 0 && o.Height >= 0) return { width: o.Width, height: o.Height };
  } catch {
    // Not JSON.
  }
  return undefined;
}

/** Which streams a client of `version` opens for `o` (SPDY: one stream each; the error stream always from v2). */
export function expectedStreams(version: RemoteCommandVersion, o: StreamOptions): string[] {
  const out = ['error'];
  if (o.stdin) out.push('stdin');
  if (o.stdout) out.push('stdout');
  // With a tty, stderr is the terminal: v2 on never opens it; v1 does.
  if (o.stderr && (!o.tty || version === 'channel.k8s.io')) out.push('stderr');
  if (o.tty && version !== 'channel.k8s.io' && version !== 'v2.channel.k8s.io') out.push('resize');
  return out;
}
