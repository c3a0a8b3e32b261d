import * as grpc from '@grpc/grpc-js';

import { invalidArgument, unavailable, unimplemented } from '../errdefs/errors.js';
import { toWire } from '../errdefs/codes.js';
import type { CriContext } from './context.js';

// The one wrapper every RPC goes through (STYLE.md, containerd's instrumented
// service): readiness, a log line on entry and exit, the operation observer
// (metrics), and the single translation from domain error to gRPC status.
// Handlers only return values or throw domain errors.

/** `signal` aborts when the client cancels the call or its deadline passes. */
export type UnaryHandler = (req: never, ctx: CriContext, signal: AbortSignal) => Promise<unknown>;

/** A request whose bytes did not decode as the method's message (see server.ts). */
export class MalformedRequest {
  constructor(readonly reason: string) {}
}

/** Observes every finished operation; metrics plug in here. */
export type OperationObserver = (service: string, method: string, grpcCode: number, seconds: number) => void;

/** RPCs answered while the runtime half is not ready, so clients can see why. */
const alwaysServed = new Set(['Version', 'Status']);

/** The sending side of a server-streaming RPC. */
export interface ServerStream {
  /** Aborts when the client cancels the call or its deadline passes. */
  readonly signal: AbortSignal;
  /** Resolves once grpc-js takes the message without buffering past its limit (waits for 'drain'); rejects once the call is cancelled. */
  send(message: unknown): Promise<void>;
}

/** Sends messages until it resolves (the stream ends OK) or throws (the stream ends with that error). */
export type StreamingHandler = (req: never, ctx: CriContext, stream: ServerStream) => Promise<void>;

export function instrumentUnary(
  service: string,
  method: string,
  handler: UnaryHandler | undefined,
  ctx: CriContext,
  observe: OperationObserver,
): grpc.handleUnaryCall<unknown, unknown> {
  return (call, callback) => {
    const op = begin(service, method, call, ctx, observe);
    void (async () => {
      try {
        admit(service, method, call.request, handler, ctx);
        const res = await handler!(call.request as never, ctx, op.signal);
        op.finish(0);
        callback(null, res);
      } catch (e: unknown) {
        const w = toWire(e);
        op.finish(w.grpcCode, detailsOf(w.message));
        callback({ code: w.grpcCode, details: detailsOf(w.message), metadata: new grpc.Metadata() }, null);
      }
    })().catch((e: unknown) => ctx.log.error('answering a CRI call failed', { rpc: method, error: e instanceof Error ? (e.stack ?? e.message) : String(e) }));
  };
}

/** Server-streaming RPCs: the same checks, log lines and observer; built ones from the streaming registry, the rest UNIMPLEMENTED. */
export function instrumentStreaming(
  service: string,
  method: string,
  handler: StreamingHandler | undefined,
  ctx: CriContext,
  observe: OperationObserver,
): grpc.handleServerStreamingCall<unknown, unknown> {
  return (call) => {
    const op = begin(service, method, call, ctx, observe);
    const stream: ServerStream = {
      signal: op.signal,
      send: (message) =>
        new Promise<void>((resolve, reject) => {
          if (op.signal.aborted) return reject(op.signal.reason);
          if (call.write(message)) return resolve();
          const done = (e?: unknown): void => {
            call.off('drain', done);
            op.signal.removeEventListener('abort', cancelled);
            if (e === undefined) resolve();
            else reject(e);
          };
          const cancelled = (): void => done(op.signal.reason);
          call.on('drain', done);
          op.signal.addEventListener('abort', cancelled, { once: true });
        }),
    };
    void (async () => {
      try {
        admit(service, method, call.request, handler, ctx);
        await handler!(call.request as never, ctx, stream);
        if (op.signal.aborted) return op.finish(grpc.status.CANCELLED);
        op.finish(0);
        call.end();
      } catch (e: unknown) {
        // A cancelled call has nobody to tell; its end is logged as CANCELLED.
        if (op.signal.aborted) return op.finish(grpc.status.CANCELLED);
        const w = toWire(e);
        op.finish(w.grpcCode, detailsOf(w.message));
        call.emit('error', { code: w.grpcCode, details: detailsOf(w.message), metadata: new grpc.Metadata() });
      }
    })().catch((e: unknown) => ctx.log.error('answering a CRI call failed', { rpc: method, error: e instanceof Error ? (e.stack ?? e.message) : String(e) }));
  };
}

/**
 * The status message as sent: an error quoting a client's megabyte-long
 * name would not fit in the HTTP/2 trailer (the client would see INTERNAL);
 * the log line keeps the whole message.
 */
const maxDetails = 4096;
function detailsOf(message: string): string {
  return message.length <= maxDetails ? message : `${message.slice(0, maxDetails)}… (${message.length} characters)`;
}

/** Throws what the call must be answered with before its handler runs. */
function admit(service: string, method: string, req: unknown, handler: unknown, ctx: CriContext): void {
  if (req instanceof MalformedRequest) throw invalidArgument(`malformed ${method}Request: ${req.reason}`, { field: 'request' });
  if (!handler) throw unimplemented(`${service}.${method} is not implemented by usernode yet`);
  if (!alwaysServed.has(method) && !ctx.ready()) throw unavailable('the usernode runtime is not ready yet');
}

/** Cancellation, the entry log line, and `finish`: the exit log line and the observer. */
function begin(service: string, method: string, call: grpc.ServerUnaryCall<unknown, unknown> | grpc.ServerWritableStream<unknown, unknown>, ctx: CriContext, observe: OperationObserver): { signal: AbortSignal; finish(code: number, error?: string): void } {
  const start = process.hrtime.bigint();
  const cancelled = new AbortController();
  call.once('cancelled', () => cancelled.abort(new Error(`${method} cancelled by the client`)));
  ctx.log.debug('cri call', { rpc: method });
  return {
    signal: cancelled.signal,
    finish(code, error) {
      const seconds = Number(process.hrtime.bigint() - start) / 1e9;
      observe(service, method, code, seconds);
      const fields = { rpc: method, code: grpc.status[code] ?? String(code), ms: Math.round(seconds * 1e4) / 10, error };
      if (code === 0 || code === grpc.status.UNIMPLEMENTED || code === grpc.status.NOT_FOUND || code === grpc.status.CANCELLED) ctx.log.debug('cri done', fields);
      else ctx.log.warn('cri failed', fields);
    },
  };
}
