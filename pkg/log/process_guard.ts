import type { Logger } from './logger.js';

// The last line of defence of a long-running half: an error no listener,
// callback or promise chain handled. Every such place is a bug to fix where it
// happens; until then one stray throw must not take down every pod's runtime
// (or the node's agent) with it. It is logged with its stack, counted, and the
// process goes on serving, as containerd's and CRI-O's servers recover panics
// per request.

export type UncaughtKind = 'exception' | 'rejection';

/** Installs the process-wide handlers; returns their removal (tests). `counted` feeds a metric. */
export function guardProcess(log: Logger, counted: (kind: UncaughtKind) => void = () => {}): () => void {
  const report = (kind: UncaughtKind, e: unknown): void => {
    try {
      counted(kind);
      log.error(kind === 'exception' ? 'uncaught exception; still serving' : 'unhandled promise rejection; still serving', { error: describe(e) });
    } catch {
      // Logging itself failed (stderr gone): nothing more to do, and nothing to throw into.
    }
  };
  const onException = (e: unknown): void => report('exception', e);
  const onRejection = (e: unknown): void => report('rejection', e);
  process.on('uncaughtException', onException);
  process.on('unhandledRejection', onRejection);
  return () => {
    process.off('uncaughtException', onException);
    process.off('unhandledRejection', onRejection);
  };
}

function describe(e: unknown): string {
  if (e instanceof Error) return e.stack ?? `${e.name}: ${e.message}`;
  try {
    return `non-error value thrown: ${typeof e === 'string' ? e : JSON.stringify(e)}`;
  } catch {
    return `non-error value thrown: ${String(e)}`;
  }
}
