import { DomainError, type ErrorCode, isDomainError, messageOf } from './errors.js';

// The one table from domain error to wire codes. gRPC numbers are those of
// google.rpc.Code (grpc-js `status`), kept as numbers here so this package
// does not import grpc-js (DESIGN.md: errdefs is a leaf).
const table: Record<ErrorCode, { grpc: number; http: number }> = {
  InvalidArgument: { grpc: 3, http: 400 },
  DeadlineExceeded: { grpc: 4, http: 504 },
  NotFound: { grpc: 5, http: 404 },
  AlreadyExists: { grpc: 6, http: 409 },
  PermissionDenied: { grpc: 7, http: 403 },
  ResourceExhausted: { grpc: 8, http: 429 },
  FailedPrecondition: { grpc: 9, http: 412 },
  Unimplemented: { grpc: 12, http: 501 },
  Internal: { grpc: 13, http: 500 },
  Unavailable: { grpc: 14, http: 503 },
};

export interface WireError {
  grpcCode: number;
  httpStatus: number;
  /** Stable domain code name, e.g. "NotFound"; "Internal" for unexpected errors. */
  code: ErrorCode;
  message: string;
}

export function toWire(e: unknown): WireError {
  if (isDomainError(e)) {
    const row = table[e.code];
    return { grpcCode: row.grpc, httpStatus: row.http, code: e.code, message: describe(e) };
  }
  return { grpcCode: table.Internal.grpc, httpStatus: 500, code: 'Internal', message: messageOf(e) };
}

function describe(e: DomainError): string {
  return e.field && !e.message.includes(e.field) ? `${e.field}: ${e.message}` : e.message;
}
