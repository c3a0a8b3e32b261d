#!/usr/bin/env bash
# Builds a real control plane for the test bed from Go modules (the Go module
# proxy is the only network it needs), as the user running the tests, cached by
# version under ${XDG_CACHE_HOME:-~/.cache}/usernode/tools so a second run does
# not rebuild. Prints NAME=PATH lines for the test runner to eval.
#   scripts/build-control-plane.sh [newest|oldest|etcd …]   (no part: all three)
#   kubernetes-<ver>/: newest: kube-apiserver, kube-controller-manager, kube-scheduler,
#                      kubelet, kubectl from k8s.io/kubernetes (versions.json "kubernetes")
#                      oldest: kube-apiserver, kube-controller-manager, kube-scheduler of
#                      the oldest release the node half supports ("kubernetesOldest", the
#                      newest patch of that minor on the proxy), for the version skew tests
#                      (USERNODE_*_OLDEST); kubelet and kubectl stay the newest.
#   etcd-<ver>/:       etcd, etcdctl from go.etcd.io/etcd/{server,etcdctl}/v3
#                      (versions.json "etcd": the etcd minor the Kubernetes release
#                      tests with, hack/lib/etcd.sh, at its newest patch)
# Neither module builds from its own folder: k8s.io/kubernetes replaces its k8s.io/*
# staging modules with ./staging/..., and etcd's modules replace each other with
# ../api etc., folders the module zips do not hold. So each is built from a
# throw-away wrapper module that requires it and, for Kubernetes, replaces each
# staging module with its published v0.<minor>.<patch> (v1.37.2 -> v0.37.2).
# Flags follow hack/lib/golang.sh's release build: -trimpath, -s -w, tags
# selinux,notest,grpcnotrace, CGO_ENABLED=0 (upstream links kubelet with cgo; it
# does not need it here), and the version stamped into component-base and
# client-go so `kubectl version` and the apiserver's /version report it.
# Cost on the 2-core test host: about 10 minutes (576 s with an empty Go build
# cache and the modules already fetched; 593 s for the first run, which fetched
# the ~170 modules too). The tool cache then holds 334 MB (Kubernetes) and 40 MB
# (etcd); the Go build cache grows by about 4 GB, the module cache by up to 1 GB.
# The oldest release's three binaries (v1.34.4) cost about as much again: 1186 s
# wall measured cold while the newest set built beside it on the same 2 cores
# (10 min user + 2.3 min system CPU; its ~170 modules fetched too), 255 MB cached.
# With the binaries cached a run takes no time. Rebuilds give the same bytes.
set -euo pipefail
repo=$(cd "$(dirname "$0")/.." && pwd)
go=${GO:-$(command -v go || echo /usr/local/go/bin/go)}
[ -x "$go" ] || { echo "build-control-plane: the Go toolchain is required (go not found in PATH or /usr/local/go/bin)" >&2; exit 1; }
version() { node -p "require('$repo/versions.json').$1 ?? ''"; }
cache=${XDG_CACHE_HOME:-$HOME/.cache}/usernode/tools
export GOFLAGS=-modcacherw GOTOOLCHAIN=${GOTOOLCHAIN:-local} CGO_ENABLED=${CGO_ENABLED:-0}
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
started=$SECONDS
fail() { echo "build-control-plane: $*" >&2; exit 1; }
# `go mod download -json MODULE@VERSION`, printing the named fields one a line.
download() {
  local mod=$1; shift
  (cd "$tmp" && "$go" mod download -json "$mod") | node -e '
    let s = ""; process.stdin.on("data", (d) => (s += d)).on("end", () => {
      const j = JSON.parse(s);
      if (j.Error) { console.error(j.Error); process.exit(1); }
      for (const f of process.argv.slice(1)) console.log(j[f] ?? "");
    });' "$@"
}

# build_kubernetes KEY BINARY...: builds the binaries of the release versions.json KEY
# names into $cache/kubernetes-<ver>/ unless they are there; sets kdir.
build_kubernetes() {
  local key=$1; shift
  local kbins=("$@") kubernetes kminor missing=0 fields gomod info published staging godebug w pkgs ldflags drift p b m g
  kubernetes=$(version "$key")
  [[ $kubernetes =~ ^v1\.([0-9]+)\.[0-9]+$ ]] || fail "versions.json: $key must be a version like v1.37.2, got '$kubernetes'"
  kminor=${BASH_REMATCH[1]}
  kdir=$cache/kubernetes-$kubernetes
  for b in "${kbins[@]}"; do [ -x "$kdir/$b" ] || missing=1; done
  [ "$missing" = 1 ] || return 0
  echo "build-control-plane: building ${kbins[*]} $kubernetes (once; cached in $kdir)" >&2
  fields=$(download "k8s.io/kubernetes@$kubernetes" GoMod Info) ||
    fail "k8s.io/kubernetes@$kubernetes: not on the module proxy ($("$go" env GOPROXY))"
  { read -r gomod; read -r info; } <<<"$fields"
  published=$(node -p "JSON.parse(require('fs').readFileSync('$info', 'utf8')).Time")
  # The staging modules: what k8s.io/kubernetes replaces with ./staging/src/k8s.io/*,
  # each published from the same tag as v0.<minor>.<patch>.
  staging=$("$go" mod edit -json "$gomod" | node -e '
    let s = ""; process.stdin.on("data", (d) => (s += d)).on("end", () => {
      for (const r of JSON.parse(s).Replace ?? [])
        if (r.New.Path.startsWith("./staging/")) console.log(r.Old.Path);
    });')
  [ -n "$staging" ] || fail "k8s.io/kubernetes@$kubernetes: no ./staging replacements in its go.mod"
  godebug=$("$go" mod edit -json "$gomod" | node -e '
    let s = ""; process.stdin.on("data", (d) => (s += d)).on("end", () => {
      for (const g of JSON.parse(s).GoDebug ?? []) console.log(`${g.Key}=${g.Value}`);
    });')
  w=$tmp/kubernetes-$kubernetes
  mkdir -p "$w"
  (
    cd "$w"
    "$go" mod init usernode.test/control-plane >/dev/null 2>&1
    args=(-require="k8s.io/kubernetes@$kubernetes")
    for m in $staging; do args+=(-replace="$m=$m@v0.${kubernetes#v1.}"); done
    for g in $godebug; do args+=(-godebug="$g"); done
    "$go" mod edit "${args[@]}"
  ) || fail "Kubernetes wrapper module"
  pkgs=()
  for b in "${kbins[@]}"; do pkgs+=("k8s.io/kubernetes/cmd/$b"); done
  # hack/lib/version.sh stamps both packages; buildDate is the tag's publication
  # time (from the proxy), so rebuilding gives the same binaries.
  ldflags="-s -w"
  for p in k8s.io/client-go/pkg/version k8s.io/component-base/version; do
    ldflags+=" -X $p.gitVersion=$kubernetes -X $p.gitMajor=1 -X $p.gitMinor=$kminor"
    ldflags+=" -X $p.gitTreeState=archive -X $p.buildDate=$(date -u -d "$published" +%Y-%m-%dT%H:%M:%SZ)"
  done
  (cd "$w" && "$go" build -mod=mod -trimpath -tags selinux,notest,grpcnotrace \
    -ldflags "$ldflags" -o "$w/bin/" "${pkgs[@]}") ||
    fail "building Kubernetes $kubernetes failed (the go output above says why)"
  # The wrapper must select what k8s.io/kubernetes itself pins, or these are not
  # quite the binaries the release ships: say where a dependency moved.
  drift=$( (cd "$w" && "$go" list -m -f '{{.Path}} {{.Version}}' all) | node -e '
    const pinned = new Map(JSON.parse(process.argv[1]).Require.map((r) => [r.Path, r.Version]));
    for (const line of require("fs").readFileSync(0, "utf8").trim().split("\n")) {
      const [path, v] = line.split(" ");
      const want = pinned.get(path);
      if (want && want !== "v0.0.0" && want !== v) console.log(`${path} ${want} -> ${v}`);
    }' "$("$go" mod edit -json "$gomod")")
  [ -z "$drift" ] || echo "build-control-plane: warning: the wrapper selected other versions than k8s.io/kubernetes pins:"$'\n'"$drift" >&2
  mkdir -p "$kdir"
  for b in "${kbins[@]}"; do mv "$w/bin/$b" "$kdir/"; done
}

# build_etcd: etcd and etcdctl of versions.json "etcd" into $cache/etcd-<ver>/ unless there; sets edir.
build_etcd() {
  local etcd w b
  etcd=$(version etcd)
  [[ $etcd =~ ^v3\.[0-9]+\.[0-9]+$ ]] || fail "versions.json: etcd must be a version like v3.7.3, got '$etcd'"
  edir=$cache/etcd-$etcd
  [ ! -x "$edir/etcd" ] || [ ! -x "$edir/etcdctl" ] || return 0
  echo "build-control-plane: building etcd and etcdctl $etcd (once; cached in $edir)" >&2
  w=$tmp/etcd
  mkdir -p "$w"
  (
    cd "$w"
    "$go" mod init usernode.test/etcd >/dev/null 2>&1
    "$go" mod edit -require="go.etcd.io/etcd/server/v3@$etcd" -require="go.etcd.io/etcd/etcdctl/v3@$etcd"
  ) || fail "etcd wrapper module"
  # etcd's own build (scripts/build_lib.sh) stamps only GitSHA, which the proxy does not know.
  for b in etcd:go.etcd.io/etcd/server/v3 etcdctl:go.etcd.io/etcd/etcdctl/v3; do
    (cd "$w" && "$go" build -mod=mod -trimpath -ldflags "-s -w" -o "$w/bin/${b%%:*}" "${b#*:}") ||
      fail "building ${b%%:*} $etcd failed (the go output above says why)"
  done
  mkdir -p "$edir"
  mv "$w/bin/etcd" "$w/bin/etcdctl" "$edir/"
}

parts=("$@")
[ ${#parts[@]} -gt 0 ] || parts=(newest oldest etcd)
dirs=()
for part in "${parts[@]}"; do
  case $part in
    newest)
      build_kubernetes kubernetes kube-apiserver kube-controller-manager kube-scheduler kubelet kubectl
      dirs+=("$kdir")
      echo "USERNODE_KUBE_APISERVER=$kdir/kube-apiserver"
      echo "USERNODE_KUBE_CONTROLLER_MANAGER=$kdir/kube-controller-manager"
      echo "USERNODE_KUBE_SCHEDULER=$kdir/kube-scheduler"
      echo "USERNODE_KUBELET=$kdir/kubelet"
      echo "USERNODE_KUBECTL=$kdir/kubectl"
      ;;
    oldest)
      # Only the control plane: kubelet and kubectl stay at the newest release
      # (the node half is what is tested against the older apiserver).
      build_kubernetes kubernetesOldest kube-apiserver kube-controller-manager kube-scheduler
      dirs+=("$kdir")
      echo "USERNODE_KUBE_APISERVER_OLDEST=$kdir/kube-apiserver"
      echo "USERNODE_KUBE_CONTROLLER_MANAGER_OLDEST=$kdir/kube-controller-manager"
      echo "USERNODE_KUBE_SCHEDULER_OLDEST=$kdir/kube-scheduler"
      ;;
    etcd)
      build_etcd
      dirs+=("$edir")
      echo "USERNODE_ETCD=$edir/etcd"
      echo "USERNODE_ETCDCTL=$edir/etcdctl"
      ;;
    *) fail "unknown part '$part' (the parts are newest, oldest and etcd; none means all)" ;;
  esac
done
[ $((SECONDS - started)) -lt 5 ] || echo "build-control-plane: built in $((SECONDS - started)) s; $(du -sh "${dirs[@]}" | awk '{printf "%s %s  ", $1, $2}')" >&2
