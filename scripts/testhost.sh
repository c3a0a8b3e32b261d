#!/usr/bin/env bash
# The test bed's remote host, as root: a network namespace "usernode-th" joined
# to the host by a veth pair on a private test subnet, with a TCP server and two
# OCI registries (Debian docker-registry) in it: plain HTTP and anonymous on
# :5000, basic auth on :5001. The node namespace reaches them through slirp4netns
# like any remote host. `up` prints the environment the tests read.
#   scripts/testhost.sh up | down | env
set -euo pipefail
ns=usernode-th
host_if=un-th0
peer_if=un-th1
host_ip=192.168.213.1
peer_ip=192.168.213.2
port=18080
pidfile=/run/usernode-testhost.pid
dns_pidfile=/run/usernode-testhost-dns.pid
# The names the test host's DNS server answers (A records).
dns_name=usernode-test.example
dns_answer=192.168.213.99
registry_port=5000
auth_registry_port=5001
auth_user=usernode
auth_password=s3cret
# Where `up` recorded the registries' fresh root-owned folder (configs, storage, logs).
registry_dirfile=/run/usernode-testhost-registry.dir
here=$(cd "$(dirname "$0")" && pwd)

print_env() {
  echo "USERNODE_TESTHOST=$peer_ip:$port"
  echo "USERNODE_REGISTRY=$peer_ip:$registry_port"
  echo "USERNODE_AUTH_REGISTRY=$peer_ip:$auth_registry_port"
  echo "USERNODE_AUTH_USER=$auth_user:$auth_password"
  echo "USERNODE_TESTHOST_DNS=$peer_ip:53,$dns_name=$dns_answer"
}

# registry_config NAME PORT [HTPASSWD]: a docker-registry config with storage of its own.
registry_config() {
  local dir=$1/$2
  mkdir -p "$dir/storage"
  {
    echo "version: 0.1"
    echo "log:"
    echo "  level: warn"
    echo "  accesslog: { disabled: true }"
    echo "  fields: { service: usernode-test-$2 }"
    echo "storage:"
    echo "  filesystem: { rootdirectory: $dir/storage }"
    echo "  delete: { enabled: true }"
    echo "  maintenance: { uploadpurging: { enabled: false } }"
    echo "http:"
    echo "  addr: $peer_ip:$3"
    echo "  secret: $(od -An -N16 -tx1 /dev/urandom | tr -d ' \n')"
    echo "  headers: { X-Content-Type-Options: [nosniff] }"
    if [ -n "${4:-}" ]; then
      echo "auth:"
      echo "  htpasswd: { realm: usernode-test, path: $4 }"
    fi
  } > "$dir/config.yml"
}

# start_registry DIR NAME: docker-registry serving DIR/NAME/config.yml inside the netns.
start_registry() {
  setsid ip netns exec "$ns" docker-registry serve "$1/$2/config.yml" \
    </dev/null >"$1/$2/registry.log" 2>&1 &
  echo $! > "/run/usernode-testhost-$2.pid"
}

# wait_v2 PORT STATUS: until GET /v2/ on the registry answers STATUS.
wait_v2() {
  for _ in $(seq 100); do
    got=$(ip netns exec "$ns" python3 -c "
import urllib.request, urllib.error
try:
    print(urllib.request.urlopen('http://$peer_ip:$1/v2/', timeout=1).status)
except urllib.error.HTTPError as e:
    print(e.code)
except Exception:
    print(0)" 2>/dev/null || echo 0)
    [ "$got" = "$2" ] && return 0
    sleep 0.1
  done
  echo "testhost: the registry on $peer_ip:$1 did not answer GET /v2/ with $2 (last: $got)" >&2
  return 1
}

case "${1:-}" in
  up)
    [ "$(id -u)" = 0 ] || { echo "testhost: must run as root" >&2; exit 1; }
    "$0" down >/dev/null 2>&1 || true
    ip netns add "$ns"
    ip link add "$host_if" type veth peer name "$peer_if"
    ip link set "$peer_if" netns "$ns"
    ip addr add "$host_ip/24" dev "$host_if"
    ip link set "$host_if" up
    ip netns exec "$ns" ip addr add "$peer_ip/24" dev "$peer_if"
    ip netns exec "$ns" ip link set "$peer_if" up
    ip netns exec "$ns" ip link set lo up
    ip netns exec "$ns" ip route add default via "$host_ip"
    setsid ip netns exec "$ns" python3 "$here/../test/testhost/banner_server.py" "$peer_ip" "$port" \
      </dev/null >/run/usernode-testhost.log 2>&1 &
    echo $! > "$pidfile"
    for _ in $(seq 50); do
      ip netns exec "$ns" python3 -c "import socket; socket.create_connection(('$peer_ip', $port), 1).close()" 2>/dev/null && break
      sleep 0.1
    done
    setsid ip netns exec "$ns" python3 "$here/../test/testhost/dns_server.py" "$peer_ip" 53 "$dns_name=$dns_answer" \
      </dev/null >/run/usernode-testhost-dns.log 2>&1 &
    echo $! > "$dns_pidfile"
    command -v docker-registry >/dev/null || { echo "testhost: docker-registry is missing (scripts/host-setup.sh --tests installs it)" >&2; exit 1; }
    command -v htpasswd >/dev/null || { echo "testhost: htpasswd is missing (apache2-utils; scripts/host-setup.sh --tests installs it)" >&2; exit 1; }
    regdir=$(mktemp -d /tmp/usernode-registry.XXXXXX)
    chmod 0755 "$regdir"
    echo "$regdir" > "$registry_dirfile"
    htpasswd -Bbn "$auth_user" "$auth_password" > "$regdir/htpasswd"
    registry_config "$regdir" plain "$registry_port"
    registry_config "$regdir" auth "$auth_registry_port" "$regdir/htpasswd"
    start_registry "$regdir" plain
    start_registry "$regdir" auth
    wait_v2 "$registry_port" 200 || { cat "$regdir/plain/registry.log" >&2; exit 1; }
    wait_v2 "$auth_registry_port" 401 || { cat "$regdir/auth/registry.log" >&2; exit 1; }
    print_env
    ;;
  down)
    for f in "$pidfile" "$dns_pidfile"; do
      if [ -f "$f" ]; then kill "$(cat "$f")" 2>/dev/null || true; rm -f "$f"; fi
    done
    for name in plain auth; do
      f=/run/usernode-testhost-$name.pid
      [ -f "$f" ] || continue
      pid=$(cat "$f")
      # Only the registry this script started: a stale pid may have been reused.
      if tr '\0' ' ' < "/proc/$pid/cmdline" 2>/dev/null | grep -q '^docker-registry serve '; then
        kill "$pid" 2>/dev/null || true
        for _ in $(seq 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
      fi
      rm -f "$f"
    done
    if [ -f "$registry_dirfile" ]; then
      regdir=$(cat "$registry_dirfile")
      case "$regdir" in /tmp/usernode-registry.*) rm -rf "$regdir" ;; esac
      rm -f "$registry_dirfile"
    fi
    ip link del "$host_if" 2>/dev/null || true
    ip netns del "$ns" 2>/dev/null || true
    ;;
  env)
    print_env
    ;;
  *) echo "usage: $0 up|down|env" >&2; exit 2 ;;
esac
