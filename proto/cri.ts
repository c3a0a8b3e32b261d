import { fileURLToPath } from 'node:url';

import * as grpc from '@grpc/grpc-js';
import * as protoLoader from '@grpc/proto-loader';

import type { ProtoGrpcType } from './generated/api.js';
import type { ProtoGrpcType as AdminGrpcType } from './generated/admin.js';

// The CRI v1 schema as grpc-js sees it. Server (pkg/cri) and client (pkg/node,
// tests) load the same declaration with the same options, so field names are
// camelCase, int64 are decimal strings (nanosecond timestamps do not fit a JS
// number) and enums are their names.

export const criProtoPath = fileURLToPath(new URL('../../proto/runtime/v1/api.proto', import.meta.url));

export const loaderOptions: protoLoader.Options = {
  keepCase: false,
  longs: String,
  enums: String,
  defaults: true,
  oneofs: true,
};

export const adminProtoPath = fileURLToPath(new URL('../../proto/usernode/v1/admin.proto', import.meta.url));

let loaded: ProtoGrpcType | undefined;
let loadedAdmin: AdminGrpcType | undefined;

/** usernode's own ImageAdmin service (proto/usernode/v1/admin.proto). */
export function loadAdmin(): AdminGrpcType {
  loadedAdmin ??= grpc.loadPackageDefinition(protoLoader.loadSync(adminProtoPath, loaderOptions)) as unknown as AdminGrpcType;
  return loadedAdmin;
}

export function loadCri(): ProtoGrpcType {
  loaded ??= grpc.loadPackageDefinition(protoLoader.loadSync(criProtoPath, loaderOptions)) as unknown as ProtoGrpcType;
  return loaded;
}

