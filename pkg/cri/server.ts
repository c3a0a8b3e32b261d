import { chmod, rm } from 'node:fs/promises';

import * as grpc from '@grpc/grpc-js';

import { loadAdmin, loadCri } from '../../proto/cri.js';
import { messageOf } from '../errdefs/errors.js';
import { prepareSocketPath } from './socket_path.js';
import type { CriContext } from './context.js';
import { imageAdminHandlers, imageServiceHandlers, runtimeServiceHandlers, runtimeServiceStreamingHandlers } from './handlers.js';
import { instrumentStreaming, instrumentUnary, MalformedRequest, type OperationObserver, type StreamingHandler, type UnaryHandler } from './instrumented.js';

// The CRI v1 gRPC server on a unix socket: runtime.v1.RuntimeService and
// runtime.v1.ImageService, every RPC of both registered (built ones from
// handlers.ts, the rest UNIMPLEMENTED).

export interface CriServerOptions {
  socketPath: string;
  ctx: CriContext;
  observe?: OperationObserver;
  /** The uid that must own an existing socket before it may be replaced. */
  uid: number;
}

export class CriServer {
  private server: grpc.Server | undefined;
  /** Set once this server bound the socket: only then is the path ours to remove. */
  private bound = false;

  constructor(private readonly opts: CriServerOptions) {}

  async start(): Promise<void> {
    const { socketPath, ctx } = this.opts;
    const observe = this.opts.observe ?? (() => {});
    await prepareSocketPath(socketPath, this.opts.uid);
    const server = new grpc.Server({ 'grpc.max_receive_message_length': 16 * 1024 * 1024 });
    const cri = loadCri();
    server.addService(
      tolerant(cri.runtime.v1.RuntimeService.service),
      implement('RuntimeService', cri.runtime.v1.RuntimeService.service, runtimeServiceHandlers, ctx, observe, runtimeServiceStreamingHandlers),
    );
    server.addService(
      tolerant(cri.runtime.v1.ImageService.service),
      implement('ImageService', cri.runtime.v1.ImageService.service, imageServiceHandlers, ctx, observe),
    );
    const admin = loadAdmin().usernode.v1.ImageAdmin.service;
    server.addService(tolerant(admin), implement('ImageAdmin', admin, imageAdminHandlers, ctx, observe));
    // The socket is made 0600 before anyone can connect: umask for the bind, chmod after.
    const oldMask = process.umask(0o177);
    try {
      await new Promise<void>((resolve, reject) =>
        server.bindAsync(`unix://${socketPath}`, grpc.ServerCredentials.createInsecure(), (err) => (err ? reject(err) : resolve())),
      );
    } finally {
      process.umask(oldMask);
    }
    this.server = server;
    this.bound = true;
    await chmod(socketPath, 0o600);
    ctx.log.info('CRI server listening', { socket: socketPath });
  }

  /** Stops accepting calls, lets running ones finish (up to `graceMs`), removes the socket. Idempotent. */
  async stop(graceMs = 5000): Promise<void> {
    const server = this.server;
    this.server = undefined;
    if (server) {
      await new Promise<void>((resolve) => {
        const timer = setTimeout(() => {
          server.forceShutdown();
          resolve();
        }, graceMs);
        server.tryShutdown(() => {
          clearTimeout(timer);
          resolve();
        });
      });
    }
    if (this.bound) await rm(this.opts.socketPath, { force: true });
    this.bound = false;
  }
}

function implement(
  service: string,
  def: grpc.ServiceDefinition,
  handlers: Readonly<Record<string, UnaryHandler>>,
  ctx: CriContext,
  observe: OperationObserver,
  streaming: Readonly<Record<string, StreamingHandler>> = {},
): grpc.UntypedServiceImplementation {
  const impl: grpc.UntypedServiceImplementation = {};
  for (const [name, method] of Object.entries(def)) {
    const rpc = method.originalName ?? name;
    impl[rpc] = method.responseStream
      ? instrumentStreaming(service, name, streaming[name], ctx, observe)
      : instrumentUnary(service, name, handlers[name], ctx, observe);
  }
  return impl;
}

/**
 * The service definition with a request decoder that never throws: grpc-js
 * would answer INTERNAL for bytes that do not decode, the CRI contract is
 * INVALID_ARGUMENT, and only the wrapper maps errors to codes.
 */
function tolerant(def: grpc.ServiceDefinition): grpc.ServiceDefinition {
  return Object.fromEntries(
    Object.entries(def).map(([name, method]) => [
      name,
      {
        ...method,
        requestDeserialize: (bytes: Buffer): unknown => {
          try {
            return method.requestDeserialize(bytes);
          } catch (e: unknown) {
            return new MalformedRequest(messageOf(e));
          }
        },
      },
    ]),
  ) as grpc.ServiceDefinition;
}

