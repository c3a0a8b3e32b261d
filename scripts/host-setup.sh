#!/usr/bin/env bash
# One-time host set-up for a rootless usernode, run as root:
#   sudo scripts/host-setup.sh [--create-user] [--tests] [--bench] USER
# Installs the Debian packages the node needs (and, with --tests, what the test
# bed needs; with --bench, containerd and iperf3 for the side-by-side benchmarks), gives
# USER a subuid/subgid range of 65536 ids, makes /dev/net/tun usable and gives
# USER a runtime folder (/run/user/UID) where no login manager makes one.
# Idempotent: a second run changes nothing.
set -euo pipefail

create_user=0
tests=0
bench=0
user=""
for arg in "$@"; do
  case "$arg" in
    --create-user) create_user=1 ;;
    --tests) tests=1 ;;
    --bench) bench=1 ;;
    -h|--help) sed -n '2,8p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    -*) echo "host-setup: unknown flag $arg" >&2; exit 2 ;;
    *) [ -z "$user" ] || { echo "host-setup: only one USER may be given" >&2; exit 2; }; user=$arg ;;
  esac
done
[ -n "$user" ] || { echo "usage: sudo $0 [--create-user] [--tests] [--bench] USER" >&2; exit 2; }
[ "$(id -u)" = 0 ] || { echo "host-setup: must run as root (sudo $0 $*)" >&2; exit 1; }
[ "$user" != root ] || { echo "host-setup: USER must be an ordinary user, not root" >&2; exit 2; }

log() { echo "host-setup: $*"; }

# --- Debian packages -------------------------------------------------------
packages=(uidmap rootlesskit slirp4netns runc conmon catatonit socat containernetworking-plugins iptables iproute2 util-linux procps openssl)
if [ "$tests" = 1 ]; then
  # prometheus: promtool and the server the metrics tests scrape the agent with.
  # systemd: systemd-analyze verify checks the unit `usernode install` writes.
  packages+=(python3 git tar ca-certificates docker-registry busybox-static apache2-utils attr zstd gcc libc6-dev openssl prometheus systemd)
fi
if [ "$bench" = 1 ]; then
  # The benchmarks' reference: containerd 1.6 (CRI plugin, overlayfs), run rootless by bench/run.sh;
  # iperf3 for the pod network benchmark.
  packages+=(containerd iperf3)
fi
missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
done
if [ "${#missing[@]}" -gt 0 ]; then
  log "installing ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
else
  log "packages already installed"
fi
if [ "$tests" = 1 ] && command -v systemctl >/dev/null; then
  # The package enables a system-wide Prometheus on :9090; the tests start their own on a free loopback port.
  systemctl disable --now prometheus >/dev/null 2>&1 || systemctl disable prometheus >/dev/null 2>&1 || true
fi

# --- the user -------------------------------------------------------------------
if ! id "$user" >/dev/null 2>&1; then
  if [ "$create_user" = 1 ]; then
    log "creating user $user"
    useradd --create-home --shell /bin/bash "$user"
  else
    echo "host-setup: no user $user (add --create-user to create one)" >&2
    exit 1
  fi
fi
uid=$(id -u "$user")
gid=$(id -g "$user")

# --- subuid/subgid: 65536 ids, past every existing range -------------------------
for f in /etc/subuid /etc/subgid; do
  touch "$f"
  have=$(awk -F: -v u="$user" -v id="$uid" '($1==u || $1==id) {n+=$3} END {print n+0}' "$f")
  if [ "$have" -lt 65536 ]; then
    start=$(awk -F: 'BEGIN {m=100000} NF==3 && $2+$3>m {m=$2+$3} END {print m}' "$f")
    log "giving $user ids $start-$((start + 65535)) in $f"
    echo "$user:$start:65536" >> "$f"
  fi
done

# --- /dev/net/tun for slirp4netns -------------------------------------------------
if [ ! -c /dev/net/tun ]; then
  modprobe tun 2>/dev/null || true
  if [ ! -c /dev/net/tun ]; then
    mkdir -p /dev/net
    mknod /dev/net/tun c 10 200
  fi
fi
chmod 0666 /dev/net/tun
if [ -d /etc/udev/rules.d ]; then
  rule='KERNEL=="tun", MODE="0666"'
  grep -qsF "$rule" /etc/udev/rules.d/60-usernode-tun.rules || echo "$rule" > /etc/udev/rules.d/60-usernode-tun.rules
fi

# --- a runtime folder where no login manager makes one ----------------------------
if [ ! -d "/run/user/$uid" ]; then
  log "creating /run/user/$uid"
  install -d -m 0755 /run/user
  install -d -m 0700 -o "$uid" -g "$gid" "/run/user/$uid"
fi

log "done: $user (uid $uid) can run 'usernode run'"
