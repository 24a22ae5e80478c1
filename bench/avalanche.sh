#!/usr/bin/env bash
# DHCP avalanche: Kea's perfdhcp --scenario avalanche starts N new clients
# at once and retries each with back-off until every one holds a lease;
# the time until the last one does, per server, in the same run: bootfleet
# (embedded store), bootfleet with `[state] backend = "etcd"` (etcd in the
# server's namespace, on the server's core) and kea-dhcp4 (memfile on
# disk). Same namespaces, veth pair, pinning and spec as bench/dhcp.sh; a
# fresh lease store for every run. Prints each run and the medians.
# Needs root and: apt-get install kea-admin kea-dhcp4-server etcd-server iproute2
# Usage: sudo bench/avalanche.sh [RUNS] [N ...]   (default: 3 runs of 1000 and 10000)
set -euo pipefail
cd "$(dirname "$0")/.."
runs=${1:-3}
shift || true
sizes=("$@")
[ ${#sizes[@]} -gt 0 ] || sizes=(1000 10000)
work=$(mktemp -d)
srv=bfb-srv-$$ cli=bfb-cli-$$
pid=
etcd_pid=
stop_server() { if [ -n "$pid" ]; then kill "$pid" 2>/dev/null || true; wait "$pid" 2>/dev/null || true; pid=; fi; }
cleanup() { stop_server; [ -n "$etcd_pid" ] && kill "$etcd_pid" 2>/dev/null; ip netns del "$srv" 2>/dev/null || true; ip netns del "$cli" 2>/dev/null || true; rm -rf "$work"; }
trap cleanup EXIT

cargo build --release --quiet
ip netns add "$srv"; ip netns add "$cli"
ip link add bfbs netns "$srv" type veth peer name bfbc netns "$cli"
ip -n "$srv" addr add 10.64.0.2/10 dev bfbs; ip -n "$srv" link set bfbs up; ip -n "$srv" link set lo up
ip -n "$cli" addr add 10.64.0.3/10 dev bfbc; ip -n "$cli" link set bfbc up; ip -n "$cli" link set lo up

cat > "$work/spec.toml" <<SPEC
[cluster]
name = "bench"
[network]
interface = "bfbs"
subnet = "10.64.0.0/10"
server = "10.64.0.2"
gateway = "10.64.0.1"
dns = ["10.64.0.1"]
dynamic_range = ["10.65.0.0", "10.127.255.254"]
lease_time = "1h"
[boot]
kernel = "flatcar_production_pxe.vmlinuz"
initrd = "flatcar_production_pxe_image.cpio.gz"
SPEC

cat > "$work/kea.json" <<KEA
{ "Dhcp4": {
  "interfaces-config": { "interfaces": [ "bfbs" ], "dhcp-socket-type": "udp" },
  "lease-database": { "type": "memfile", "persist": true, "name": "$work/kea/leases.csv", "lfc-interval": 0 },
  "valid-lifetime": 3600,
  "subnet4": [ { "id": 1, "subnet": "10.64.0.0/10",
    "pools": [ { "pool": "10.65.0.0 - 10.127.255.254" } ],
    "option-data": [ { "name": "routers", "data": "10.64.0.1" },
                     { "name": "domain-name-servers", "data": "10.64.0.1" } ] } ],
  "loggers": [ { "name": "kea-dhcp4", "severity": "ERROR", "output_options": [ { "output": "$work/kea/kea.log" } ] } ]
} }
KEA

start() { # server: starts it with an empty lease store, waits until it listens
  rm -rf "$work/state" "$work/kea" "$work/dnsmasq.leases"; mkdir -p "$work/state" "$work/kea"
  case $1 in
    bootfleet) ip netns exec "$srv" taskset -c 0 ./target/release/bootfleet -q --state-dir "$work/state" dhcp "$work/spec.toml" > /dev/null & pid=$! ;;
    bootfleet-etcd)
      { cat "$work/spec.toml"; printf '[state]\nbackend = "etcd"\nendpoints = ["http://127.0.0.1:2379"]\nprefix = "/bench/%s"\n' "$RANDOM$RANDOM"; } > "$work/spec-etcd.toml"
      ip netns exec "$srv" taskset -c 0 ./target/release/bootfleet -q --state-dir "$work/state" dhcp "$work/spec-etcd.toml" > /dev/null & pid=$! ;;
    kea) ip netns exec "$srv" taskset -c 0 env KEA_PIDFILE_DIR="$work/kea" KEA_LOCKFILE_DIR="$work/kea" kea-dhcp4 -c "$work/kea.json" > /dev/null 2>&1 & pid=$! ;;
    dnsmasq) ip netns exec "$srv" taskset -c 0 dnsmasq --no-daemon --port=0 --interface=bfbs --bind-interfaces \
        --no-ping --quiet-dhcp --dhcp-range=10.65.0.0,10.65.255.254,255.192.0.0,1h --dhcp-option=3,10.64.0.1 --dhcp-option=6,10.64.0.1 \
        --dhcp-leasefile="$work/dnsmasq.leases" --dhcp-lease-max=5000000 --dhcp-authoritative --log-facility=/dev/null > /dev/null 2>&1 & pid=$! ;;
  esac
  for _ in $(seq 50); do
    ip netns exec "$srv" ss -Hlun 'sport = :67' | grep -q . && return 0
    sleep 0.1
  done
  echo "$1 did not start" >&2; exit 1
}


etcd_pid=
ip netns exec "$srv" taskset -c 0 etcd --data-dir "$work/etcd" --listen-client-urls http://127.0.0.1:2379 \
  --advertise-client-urls http://127.0.0.1:2379 --listen-peer-urls http://127.0.0.1:2380 > "$work/etcd.log" 2>&1 &
etcd_pid=$!
for _ in $(seq 50); do ip netns exec "$srv" curl -sf http://127.0.0.1:2379/health > /dev/null && break; sleep 0.2; done

# One avalanche: prints the seconds until every client held a lease.
avalanche() { # clients
  local out
  out=$(ip netns exec "$cli" taskset -c 1 perfdhcp -4 -l bfbc --scenario avalanche -R "$1" 10.64.0.2 2>&1 || true)
  echo "$out" > "$work/perfdhcp.last"
  # "It took 00:00:02.213189 to provision 1000 clients."
  awk '/^It took/ { split($3, t, ":"); v = sprintf("%.2f", t[1] * 3600 + t[2] * 60 + t[3]) } END { if (v == "") v = "fail"; print v }' <<< "$out"
}

declare -A all
read -r -a servers <<< "${SERVERS:-bootfleet bootfleet-etcd kea}"
printf '%-15s %8s %4s %10s\n' server clients run seconds
for n in "${sizes[@]}"; do
  for r in $(seq "$runs"); do
    for s in "${servers[@]}"; do
      start "$s"
      t=$(avalanche "$n")
      stop_server
      printf '%-15s %8s %4s %10s\n' "$s" "$n" "$r" "$t"
      all[$s,$n]="${all[$s,$n]:-} $t"
    done
  done
done
echo
median() { tr ' ' '\n' | grep -E '^[0-9.]+$' | sort -n | awk '{ v[NR] = $1 } END { if (NR) print v[int((NR + 1) / 2)], "(" v[1] "-" v[NR] ")"; else print "-" }'; }
for n in "${sizes[@]}"; do
  for s in "${servers[@]}"; do
    printf '%-15s %8s clients: median %s s\n' "$s" "$n" "$(echo "${all[$s,$n]}" | median)"
  done
done
