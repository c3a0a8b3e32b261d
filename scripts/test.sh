#!/usr/bin/env bash
# The README's test command (npm test): every test, against the real parts.
#
# As root (CI): sets the host up, provisions the unprivileged test user
# (subuid/subgid range, /dev/net/tun, runtime folder), starts the test host
# network namespace, and runs this same script as that user on a copy of the
# tree. As an ordinary user: installs the npm packages, builds, builds the Go
# test tools (cached), and runs the unit and integration tests as that user.
#   scripts/test.sh [TEST-FILE…]   (built paths, e.g. dist/test/integration/pods.test.js; default: all)
# For several checkouts tested side by side (development): USERNODE_TEST_WORK=DIR
# gives each its own copy in the test user's home, reuses a test host that is
# already up (and leaves it up), and kills none of the user's other processes.
set -euo pipefail
repo=$(cd "$(dirname "$0")/.." && pwd)
cd "$repo"

if [ "$(id -u)" = 0 ]; then
  user=${USERNODE_TEST_USER:-usernode-test}
  bash scripts/host-setup.sh --create-user --tests "$user"
  uid=$(id -u "$user")
  home=$(getent passwd "$user" | cut -d: -f6)
  shared=0
  if [ -n "${USERNODE_TEST_WORK:-}" ]; then shared=1; fi
  if [ "$shared" = 1 ] && ip netns list | grep -qw usernode-th; then
    testhost_env=$(bash scripts/testhost.sh env)
  else
    testhost_env=$(bash scripts/testhost.sh up)
    trap 'bash "$repo/scripts/testhost.sh" down' EXIT
  fi
  bed() { sed -n "s/^$1=//p" <<<"$testhost_env"; }
  # The agent runs from a copy the user owns: the clone may sit in a folder
  # the user cannot write (node_modules, dist) or even reach.
  work=$home/${USERNODE_TEST_WORK:-usernode-src}
  rm -rf "$work"
  install -d -o "$user" -g "$(id -g "$user")" "$work"
  if git -C "$repo" rev-parse --git-dir >/dev/null 2>&1; then
    git -C "$repo" ls-files -z --cached --others --exclude-standard | tar -C "$repo" --null -T - -cf - | tar -C "$work" -xf -
  else
    tar -C "$repo" --exclude=./node_modules --exclude=./dist -cf - . | tar -C "$work" -xf -
  fi
  chown -R "$user:$(id -g "$user")" "$work"
  # Kill anything a previous, interrupted run of the test user left.
  [ "$shared" = 1 ] || pkill -KILL -u "$user" 2>/dev/null || true
  # npm exports its own settings (cache folder and the like, root's) to scripts.
  while read -r v; do unset "$v"; done < <(compgen -e | grep -iE '^npm_|^INIT_CWD$' || true)
  set +e
  runuser -u "$user" -- env HOME="$home" USER="$user" LOGNAME="$user" \
    XDG_RUNTIME_DIR="/run/user/$uid" PATH="/usr/local/go/bin:/usr/local/bin:/usr/bin:/bin" \
    USERNODE_TESTHOST="$(bed USERNODE_TESTHOST)" USERNODE_REGISTRY="$(bed USERNODE_REGISTRY)" \
    USERNODE_AUTH_REGISTRY="$(bed USERNODE_AUTH_REGISTRY)" USERNODE_AUTH_USER="$(bed USERNODE_AUTH_USER)" \
    USERNODE_TESTHOST_DNS="$(bed USERNODE_TESTHOST_DNS)" \
    CI="${CI:-}" bash "$work/scripts/test.sh" "$@"
  rc=$?
  set -e
  [ "$shared" = 1 ] || pkill -KILL -u "$user" 2>/dev/null || true
  exit $rc
fi

# --- as the (unprivileged) test user ---------------------------------------------
for tool in node npm; do
  command -v "$tool" >/dev/null || { echo "test: $tool is required and was not found in PATH" >&2; exit 1; }
done
export PATH="/usr/local/go/bin:$PATH"
command -v go >/dev/null || { echo "test: the Go toolchain is required (go, e.g. /usr/local/go/bin/go) and was not found" >&2; exit 1; }

bash scripts/install.sh >/dev/null
eval "$(bash scripts/build-test-tools.sh | sed 's/^/export /')"
# The control plane the cluster tests start (test/lib/control_plane.ts), the newest release
# and the oldest the node half supports: built once, about 10 minutes cold each, then
# cached by version. A failed build fails here, naming the part.
cp_env=$(bash scripts/build-control-plane.sh) || { echo "test: scripts/build-control-plane.sh failed (above); the control plane tests need it" >&2; exit 1; }
eval "$(sed 's/^/export /' <<<"$cp_env")"

# The test images: built from busybox-static and pushed to the test registries; the
# tests read what was pushed from images.json.
if [ -n "${USERNODE_REGISTRY:-}" ]; then
  node dist/test/images/build.js --registry "$USERNODE_REGISTRY" --auth-registry "${USERNODE_AUTH_REGISTRY:-}" \
    --auth-user "${USERNODE_AUTH_USER:-}" --out "$repo/dist/test-images"
  export USERNODE_TEST_IMAGES="$repo/dist/test-images/images.json"
else
  echo "test: note: no test registries (needs root: sudo scripts/testhost.sh up; then export the USERNODE_REGISTRY, USERNODE_AUTH_REGISTRY and USERNODE_AUTH_USER it prints); the registry and image tests will fail" >&2
fi
if [ -z "${USERNODE_TESTHOST:-}" ]; then
  echo "test: note: no test host network namespace (needs root: sudo scripts/testhost.sh up; then export the USERNODE_TESTHOST it prints); the test-host reachability check will be skipped" >&2
fi
export USERNODE_REPO="$repo"
if [ $# -gt 0 ]; then
  exec node --test --test-concurrency=1 --test-reporter=spec "$@"
fi
exec node --test --test-concurrency=1 --test-reporter=spec dist/test/unit/ dist/test/integration/
