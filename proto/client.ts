import * as grpc from '@grpc/grpc-js';

import { loadAdmin, loadCri } from './cri.js';
import type { ImageServiceClient, RuntimeServiceClient, VersionResponse } from './types.js';

// A CRI client on a unix socket: how the node half (and the tests) reach any
// CRI runtime, usernode's own or another.

export interface CriClients {
  runtime: RuntimeServiceClient;
  image: ImageServiceClient;
  close(): void;
}

type Callback<T> = (err: Error | null, res?: T) => void;

/** A CRI call as a promise; a gRPC error keeps its code and names the call. */
export function criCall<T>(cri: Pick<CriClients, 'runtime' | 'image'>, service: 'runtime' | 'image', method: string, req: object): Promise<T> {
  const client = cri[service] as unknown as Record<string, (req: object, cb: Callback<T>) => void>;
  return new Promise<T>((resolve, reject) =>
    client[method]!.call(cri[service], req, (err, res) =>
      err ? reject(Object.assign(new Error(`${method}: ${err.message}`), { code: (err as { code?: number }).code })) : resolve(res as T),
    ),
  );
}

export function criClients(socketPath: string): CriClients {
  const cri = loadCri();
  const target = `unix://${socketPath}`;
  const creds = grpc.credentials.createInsecure();
  const runtime = new cri.runtime.v1.RuntimeService(target, creds);
  const image = new cri.runtime.v1.ImageService(target, creds);
  return {
    runtime,
    image,
    close: () => {
      runtime.close();
      image.close();
    },
  };
}

/** Version over a fresh connection; rejects on any error or after `timeoutMs`. */
export function criVersion(socketPath: string, timeoutMs: number): Promise<VersionResponse> {
  const c = criClients(socketPath);
  return new Promise<VersionResponse>((resolve, reject) => {
    c.runtime.Version({}, { deadline: Date.now() + timeoutMs }, (err, res) => {
      c.close();
      if (err || !res) reject(err ?? new Error('empty Version response'));
      else resolve(res);
    });
  });
}

/** usernode's ImageAdmin client, on the same socket as the CRI. */
export function imageAdminClient(socketPath: string): import('./generated/usernode/v1/ImageAdmin.js').ImageAdminClient {
  const Admin = loadAdmin().usernode.v1.ImageAdmin;
  return new Admin(`unix://${socketPath}`, grpc.credentials.createInsecure());
}
