import { fileURLToPath } from 'node:url';

import * as grpc from '@grpc/grpc-js';
import * as protoLoader from '@grpc/proto-loader';

import type { ProtoGrpcType } from './generated/api.js';

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

let loaded: ProtoGrpcType | undefined;

export function loadCri(): ProtoGrpcType {
  loaded ??= grpc.loadPackageDefinition(protoLoader.loadSync(criProtoPath, loaderOptions)) as unknown as ProtoGrpcType;
  return loaded;
}

