#!/usr/bin/env bash
# The side-by-side benchmarks (npm run bench): usernode against rootless
# containerd 1.6 in one run, results and machine facts into BENCHMARKS.md.
#   bash bench/run.sh [--only NAME[,NAME…]] [--runs N] [--warmup N] [--source worktree|head] [--out FILE] [--keep]
# Benchmarks (all by default, in this order): image_pull (pull + unpack; --runs,
# --warmup), pods (pod start serial and parallel, memory), network (iperf3).
#
# As root (CI): sets the host up (scripts/host-setup.sh --tests --bench: containerd
# among the rest), starts the test registry unless one answers already, copies the
# tree to the unprivileged test user (usernode-test) and runs the benchmark as that
# user — both runtimes are rootless —, then writes BENCHMARKS.md here and takes
# down what it started: both runtimes and their state, the registry if it started
# it, the copy, and any process the run left (found by a marker in its environment).
# --source head measures the last commit (with bench/ as in the working tree)
# instead of the working tree.
# As an ordinary user: builds this tree and runs the benchmark as that user; the
# registry must be up (sudo scripts/testhost.sh up) and containerd installed.
set -euo pipefail
repo=$(cd "$(dirname "$0")/.." && pwd)
cd "$repo"

runs=5
warmup=1
source=worktree
out=$repo/BENCHMARKS.md
keep=0
bench_dir=
all_benchmarks=(image_pull pods network)
only=$(IFS=,; echo "${all_benchmarks[*]}")
while [ $# -gt 0 ]; do
  case "$1" in
    --runs) runs=$2; shift 2 ;;
    --warmup) warmup=$2; shift 2 ;;
    --source) source=$2; shift 2 ;;
    --out) out=$(realpath -m "$2"); shift 2 ;;
    --keep) keep=1; shift ;;
    --bench-dir) bench_dir=$2; shift 2 ;; # (internal: the root half's fresh folder for the runtimes)
    --only) only=$2; shift 2 ;;
    -h|--help) sed -n '2,17p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) echo "bench: unknown argument $1 (see --help)" >&2; exit 2 ;;
  esac
done
case "$source" in worktree|head) ;; *) echo "bench: --source is worktree or head" >&2; exit 2 ;; esac
IFS=, read -r -a selected <<<"$only"
for b in "${selected[@]}"; do
  [[ " ${all_benchmarks[*]} " == *" $b "* ]] || { echo "bench: --only takes ${all_benchmarks[*]} (comma-separated), not $b" >&2; exit 2; }
done
registry_default=192.168.213.2:5000

# What is measured, for the report: the commit, and whether the code differs from it.
describe_source() {
  local rev dirty
  rev=$(git -C "$repo" rev-parse --short HEAD 2>/dev/null) || { echo "not a git checkout"; return; }
  if [ "$source" = head ]; then echo "commit $rev"; return; fi
  dirty=$(git -C "$repo" status --porcelain -- cmd pkg proto bin package.json package-lock.json 2>/dev/null | wc -l)
  if [ "$dirty" -gt 0 ]; then echo "commit $rev + uncommitted changes to $dirty file(s)"; else echo "commit $rev"; fi
}

# registry_answers HOST:PORT: GET /v2/ answers 200 (from this host, through the test bed's veth).
registry_answers() {
  node -e "
fetch('http://$1/v2/', { signal: AbortSignal.timeout(2000) })
  .then((r) => process.exit(r.status === 200 ? 0 : 1), () => process.exit(1));" 2>/dev/null
}

if [ "$(id -u)" = 0 ]; then
  user=${USERNODE_TEST_USER:-usernode-test}
  bash scripts/host-setup.sh --create-user --tests --bench "$user"
  uid=$(id -u "$user")
  home=$(getent passwd "$user" | cut -d: -f6)
  started_bed=0
  registry=$registry_default
  marker=usernode-bench-$$-$(od -An -N4 -tx1 /dev/urandom | tr -d ' \n')
  work=$home/usernode-bench-src
  cleanup() {
    # Whatever the run left: only processes carrying this run's marker.
    for p in /proc/[0-9]*; do
      [ "$(stat -c %u "$p" 2>/dev/null)" = "$uid" ] || continue
      if { tr '\0' '\n' < "$p/environ"; } 2>/dev/null | grep -qx "USERNODE_BENCH_RUN=$marker"; then
        echo "bench: killing leftover pid ${p#/proc/}: $({ tr '\0' ' ' < "$p/cmdline"; } 2>/dev/null)" >&2
        kill -KILL "${p#/proc/}" 2>/dev/null || true
      fi
    done
    [ "$keep" = 1 ] || rm -rf "$work" ${bench_dir:+"$bench_dir"} 2>/dev/null || true
    if [ "$started_bed" = 1 ]; then bash "$repo/scripts/testhost.sh" down || true; fi
  }
  trap cleanup EXIT
  if registry_answers "$registry"; then
    echo "bench: using the registry already answering on $registry"
  else
    env_out=$(bash scripts/testhost.sh up)
    started_bed=1
    registry=$(sed -n 's/^USERNODE_REGISTRY=//p' <<<"$env_out")
  fi

  # The benchmark runs from a copy the user owns (as npm test does).
  rm -rf "$work"
  install -d -o "$user" -g "$(id -g "$user")" "$work"
  if [ "$source" = head ]; then
    git -C "$repo" archive HEAD | tar -C "$work" -xf -
    git -C "$repo" ls-files -z --cached --others --exclude-standard -- bench | tar -C "$repo" --null -T - -cf - | tar -C "$work" -xf -
  elif git -C "$repo" rev-parse --git-dir >/dev/null 2>&1; then
    git -C "$repo" ls-files -z --cached --others --exclude-standard | tar -C "$repo" --null -T - -cf - | tar -C "$work" -xf -
  else
    tar -C "$repo" --exclude=./node_modules --exclude=./dist -cf - . | tar -C "$work" -xf -
  fi
  [ -f "$out" ] && cp "$out" "$work/BENCHMARKS.out.md"
  # The user's folder for the runtimes' state: fresh, under /tmp (the same disk as the user's home here).
  bench_dir=$(mktemp -d /tmp/usernode-bench-root.XXXXXX)
  chown -R "$user:$(id -g "$user")" "$work" "$bench_dir"
  while read -r v; do unset "$v"; done < <(compgen -e | grep -iE '^npm_|^INIT_CWD$' || true)
  set +e
  runuser -u "$user" -- env HOME="$home" USER="$user" LOGNAME="$user" \
    XDG_RUNTIME_DIR="/run/user/$uid" PATH="/usr/local/go/bin:/usr/local/bin:/usr/bin:/bin:/usr/sbin:/sbin" \
    USERNODE_REGISTRY="$registry" USERNODE_BENCH_RUN="$marker" USERNODE_BENCH_SOURCE="$(describe_source)" \
    bash "$work/bench/run.sh" --only "$only" --runs "$runs" --warmup "$warmup" --out "$work/BENCHMARKS.out.md" \
      --bench-dir "$bench_dir" $([ "$keep" = 1 ] && echo --keep)
  rc=$?
  set -e
  if [ "$rc" = 0 ] && [ -f "$work/BENCHMARKS.out.md" ]; then
    cp "$work/BENCHMARKS.out.md" "$out"
    echo "bench: wrote $out"
  fi
  if [ "$keep" = 1 ]; then echo "bench: kept $work and $bench_dir"; fi
  exit $rc
fi

# --- as the (unprivileged) user ---------------------------------------------------
for tool in node npm containerd ctr rootlesskit slirp4netns nsenter iperf3; do
  command -v "$tool" >/dev/null || { echo "bench: $tool is required and was not found in PATH (sudo scripts/host-setup.sh --bench $(id -un) installs containerd and iperf3)" >&2; exit 1; }
done
export PATH="/usr/local/go/bin:$PATH"
registry=${USERNODE_REGISTRY:-$registry_default}
registry_answers "$registry" || {
  echo "bench: no registry answers on $registry (needs root: sudo scripts/testhost.sh up; or run bench/run.sh as root, which does)" >&2
  exit 1
}
[ -d node_modules ] || npm ci --no-audit --no-fund --loglevel=error
npm run build --silent
eval "$(bash scripts/build-test-tools.sh | sed 's/^/export /')"
args=(--registry "$registry" --out "$out" --source "${USERNODE_BENCH_SOURCE:-$(describe_source)}")
[ "$keep" = 1 ] && args+=(--keep)
failed=()
for b in "${selected[@]}"; do
  extra=()
  [ "$b" = image_pull ] && extra+=(--runs "$runs" --warmup "$warmup")
  [ -n "$bench_dir" ] && extra+=(--dir "$bench_dir/$b")
  echo "bench: --- $b ---"
  node "dist/bench/$b.js" "${args[@]}" "${extra[@]}" || failed+=("$b")
done
if [ "${#failed[@]}" -gt 0 ]; then
  echo "bench: failed: ${failed[*]} (the others' sections were written)" >&2
  exit 1
fi
