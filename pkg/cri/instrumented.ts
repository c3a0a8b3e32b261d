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

export function instrumentUnary(
  service: string,
  method: string,
  handler: UnaryHandler | undefined,
  ctx: CriContext,
  observe: OperationObserver,
): grpc.handleUnaryCall<unknown, unknown> {
  return (call, callback) => {
    const start = process.hrtime.bigint();
    const cancelled = new AbortController();
    call.once('cancelled', () => cancelled.abort(new Error(`${method} cancelled by the client`)));
    ctx.log.debug('cri call', { rpc: method });
    void (async () => {
      try {
        const req = call.request;
        if (req instanceof MalformedRequest) throw invalidArgument(`malformed ${method}Request: ${req.reason}`, { field: 'request' });
        if (!handler) throw unimplemented(`${service}.${method} is not implemented by usernode yet`);
        if (!alwaysServed.has(method) && !ctx.ready()) throw unavailable('the usernode runtime is not ready yet');
        const res = await handler(req as never, ctx, cancelled.signal);
        finish(0);
        callback(null, res);
      } catch (e: unknown) {
        const w = toWire(e);
        finish(w.grpcCode, w.message);
        callback({ code: w.grpcCode, details: w.message, metadata: new grpc.Metadata() }, null);
      }
    })();

    function finish(code: number, error?: string): void {
      const seconds = Number(process.hrtime.bigint() - start) / 1e9;
      observe(service, method, code, seconds);
      const fields = { rpc: method, code: grpc.status[code] ?? String(code), ms: Math.round(seconds * 1e4) / 10, error };
      if (code === 0 || code === grpc.status.UNIMPLEMENTED || code === grpc.status.NOT_FOUND) ctx.log.debug('cri done', fields);
      else ctx.log.warn('cri failed', fields);
    }
  };
}

/** Server-streaming RPCs are not built yet; they end at once with UNIMPLEMENTED naming the RPC. */
export function instrumentStreaming(
  service: string,
  method: string,
  ctx: CriContext,
  observe: OperationObserver,
): grpc.handleServerStreamingCall<unknown, unknown> {
  return (call) => {
    const w = toWire(unimplemented(`${service}.${method} is not implemented by usernode yet`));
    observe(service, method, w.grpcCode, 0);
    ctx.log.debug('cri done', { rpc: method, code: 'UNIMPLEMENTED' });
    call.emit('error', { code: w.grpcCode, details: w.message });
  };
}
