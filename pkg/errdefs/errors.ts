// Domain errors shared by every package. Handlers and drivers throw these; the
// CRI wrapper (pkg/cri/instrumented.ts) and the HTTP servers map them to wire
// codes in one place (./codes.ts), so no handler builds a gRPC status itself.

export const errorCodes = [
  'NotFound',
  'AlreadyExists',
  'InvalidArgument',
  'FailedPrecondition',
  'Unavailable',
  'Unimplemented',
  'PermissionDenied',
  'ResourceExhausted',
  'DeadlineExceeded',
  'Internal',
] as const;

export type ErrorCode = (typeof errorCodes)[number];

export interface DomainErrorOptions {
  /** The request field, flag, path or object the error is about. */
  field?: string;
  cause?: unknown;
}

export class DomainError extends Error {
  readonly code: ErrorCode;
  readonly field: string | undefined;

  constructor(code: ErrorCode, message: string, options: DomainErrorOptions = {}) {
    super(message, options.cause === undefined ? undefined : { cause: options.cause });
    this.name = `${code}Error`;
    this.code = code;
    this.field = options.field;
  }
}

const make =
  (code: ErrorCode) =>
  (message: string, options?: DomainErrorOptions): DomainError =>
    new DomainError(code, message, options);

export const notFound = make('NotFound');
export const alreadyExists = make('AlreadyExists');
export const invalidArgument = make('InvalidArgument');
export const failedPrecondition = make('FailedPrecondition');
export const unavailable = make('Unavailable');
export const unimplemented = make('Unimplemented');
export const permissionDenied = make('PermissionDenied');
export const resourceExhausted = make('ResourceExhausted');
export const internal = make('Internal');
export const deadlineExceeded = make('DeadlineExceeded');

export function isDomainError(e: unknown): e is DomainError {
  return e instanceof DomainError;
}

export function isCode(e: unknown, code: ErrorCode): boolean {
  return isDomainError(e) && e.code === code;
}

/** The message of any thrown value, for logs and wrapped errors. */
export function messageOf(e: unknown): string {
  if (e instanceof Error) return e.message;
  return String(e);
}
