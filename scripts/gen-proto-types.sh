#!/usr/bin/env bash
# TypeScript types for the CRI schema, generated from proto/runtime/v1/api.proto
# into proto/generated/ (not committed, never hand-edited). The generated files
# import each other without extensions, so the folder is marked CommonJS; the
# agent only imports types from it.
set -euo pipefail
cd "$(dirname "$0")/.."
rm -rf proto/generated
npx proto-loader-gen-types --keepCase=false --longs=String --enums=String --defaults --oneofs \
  --grpcLib=@grpc/grpc-js --outDir=proto/generated proto/runtime/v1/api.proto proto/usernode/v1/admin.proto >/dev/null
echo '{ "type": "commonjs" }' > proto/generated/package.json
