#!/usr/bin/env bash
# Builds the test bed's Go tools from their modules, as the user running the
# tests, cached by version under ${XDG_CACHE_HOME:-~/.cache}/usernode/tools, so
# a second run does not rebuild. Prints NAME=PATH lines for the test runner.
#   crictl, critest: sigs.k8s.io/cri-tools (critest is a compiled test binary)
set -euo pipefail
repo=$(cd "$(dirname "$0")/.." && pwd)
go=${GO:-$(command -v go || echo /usr/local/go/bin/go)}
[ -x "$go" ] || { echo "build-test-tools: the Go toolchain is required (go not found in PATH or /usr/local/go/bin)" >&2; exit 1; }
version() { node -p "require('$repo/versions.json').$1"; }
cache=${XDG_CACHE_HOME:-$HOME/.cache}/usernode/tools
export GOFLAGS=-modcacherw GOTOOLCHAIN=${GOTOOLCHAIN:-local}

critools=$(version criTools)
dir=$cache/cri-tools-$critools
if [ ! -x "$dir/crictl" ] || [ ! -x "$dir/critest" ]; then
  echo "build-test-tools: building crictl and critest $critools (once; cached in $dir)" >&2
  tmp=$(mktemp -d)
  trap 'rm -rf "$tmp"' EXIT
  src=$(cd "$tmp" && "$go" mod download -json "sigs.k8s.io/cri-tools@$critools" | node -e 'let s="";process.stdin.on("data",d=>s+=d).on("end",()=>{const j=JSON.parse(s);if(j.Error){console.error(j.Error);process.exit(1)}console.log(j.Dir)})')
  ldflags="-X sigs.k8s.io/cri-tools/pkg/version.Version=$critools"
  (cd "$src" && "$go" build -trimpath -ldflags "$ldflags" -o "$tmp/crictl" ./cmd/crictl)
  (cd "$src" && "$go" test -c -trimpath -ldflags "$ldflags" -o "$tmp/critest" ./cmd/critest)
  mkdir -p "$dir"
  mv "$tmp/crictl" "$tmp/critest" "$dir/"
fi
echo "USERNODE_CRICTL=$dir/crictl"
echo "USERNODE_CRITEST=$dir/critest"
