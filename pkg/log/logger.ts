// A small structured logger: one line per event, `level=… msg=… key=value`, on
// stderr. Both halves of the agent write to the same stream (the runtime half
// inherits the node half's stderr), so each line names its component.

export const logLevels = ['debug', 'info', 'warn', 'error'] as const;
export type LogLevel = (typeof logLevels)[number];

export type LogFields = Record<string, string | number | boolean | undefined | null>;

export interface Logger {
  debug(msg: string, fields?: LogFields): void;
  info(msg: string, fields?: LogFields): void;
  warn(msg: string, fields?: LogFields): void;
  error(msg: string, fields?: LogFields): void;
  child(component: string): Logger;
}

export interface LoggerOptions {
  level: LogLevel;
  component: string;
  write?: (line: string) => void;
}

export function isLogLevel(s: string): s is LogLevel {
  return (logLevels as readonly string[]).includes(s);
}

export function createLogger(opts: LoggerOptions): Logger {
  const write = opts.write ?? ((line: string) => process.stderr.write(line));
  const min = logLevels.indexOf(opts.level);
  const emit = (level: LogLevel, msg: string, fields?: LogFields): void => {
    if (logLevels.indexOf(level) < min) return;
    let line = `time=${new Date().toISOString()} level=${level} component=${opts.component} msg=${quote(msg)}`;
    for (const [k, v] of Object.entries(fields ?? {})) {
      if (v === undefined || v === null) continue;
      line += ` ${k}=${quote(String(v))}`;
    }
    write(line + '\n');
  };
  return {
    debug: (m, f) => emit('debug', m, f),
    info: (m, f) => emit('info', m, f),
    warn: (m, f) => emit('warn', m, f),
    error: (m, f) => emit('error', m, f),
    child: (component) => createLogger({ ...opts, component: `${opts.component}/${component}` }),
  };
}

function quote(s: string): string {
  return /^[\w./:@+-]+$/.test(s) ? s : JSON.stringify(s);
}

/** A logger that drops everything, for unit tests. */
export const silentLogger: Logger = {
  debug: () => {},
  info: () => {},
  warn: () => {},
  error: () => {},
  child: () => silentLogger,
};
