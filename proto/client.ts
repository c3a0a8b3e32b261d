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
