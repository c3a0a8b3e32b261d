#!/usr/bin/env bash
# The test bed's remote host, as root: a network namespace "usernode-th" joined
# to the host by a veth pair on a private test subnet, with a TCP server in it.
# The node namespace reaches it through slirp4netns like any remote host.
#   scripts/testhost.sh up | down | env
set -euo pipefail
ns=usernode-th
host_if=un-th0
peer_if=un-th1
host_ip=192.168.213.1
peer_ip=192.168.213.2
port=18080
pidfile=/run/usernode-testhost.pid
here=$(cd "$(dirname "$0")" && pwd)

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
    echo "USERNODE_TESTHOST=$peer_ip:$port"
    ;;
  down)
    if [ -f "$pidfile" ]; then kill "$(cat "$pidfile")" 2>/dev/null || true; rm -f "$pidfile"; fi
    ip link del "$host_if" 2>/dev/null || true
    ip netns del "$ns" 2>/dev/null || true
    ;;
  env)
    echo "USERNODE_TESTHOST=$peer_ip:$port"
    ;;
  *) echo "usage: $0 up|down|env" >&2; exit 2 ;;
esac
