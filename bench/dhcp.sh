#!/usr/bin/env bash
# DHCP throughput: Kea's perfdhcp against bootfleet, kea-dhcp4 (memfile
# backend) and dnsmasq, one at a time on the same veth pair in the same
# run. perfdhcp (in its own namespace, pinned to core 1) offers new clients
# at rising rates for STEP seconds each; the server (pinned to core 0)
# starts with an empty lease store at every step. Prints, per server and
# rate, the DORA exchanges completed per second and the drop ratio, then
# each server's highest rate with under 1% drops and bootfleet's ratio.
# Lease stores live on disk in a temporary directory: bootfleet commits
# (fsync) every batch before its ACKs leave; Kea's memfile appends without
# fsync; dnsmasq rewrites its lease file. dnsmasq runs with --no-ping (else
# it pings every address before offering it, and answers almost nothing at
# these rates) and a 65,534-address range (with the 4M-address range the
# others get it reports "0 available" and answers nothing).
# bootfleet-etcd is bootfleet with `[state] backend = "etcd"`: its leases
# (and an OFFER's claim) go to an etcd (Debian's etcd-server) running in
# the server's namespace on the server's core, a fresh key prefix per step.
# Needs root and: apt-get install kea-admin kea-dhcp4-server dnsmasq-base etcd-server iproute2
# Usage: sudo bench/dhcp.sh [STEP_SECONDS] [RATES...]
#        sudo SERVERS="bootfleet bootfleet-etcd" bench/dhcp.sh 10   (some of them)
set -euo pipefail
cd "$(dirname "$0")/.."
step=${1:-10}
shift || true
rates=("$@")
[ ${#rates[@]} -gt 0 ] || rates=(250 500 1000 2000 4000 6000 8000 10000 11000 12000 13000 14000 16000)
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

# One step: prints "dora_per_s drop_percent".
measure() { # rate
  local out
  out=$(ip netns exec "$cli" taskset -c 1 perfdhcp -4 -l bfbc -r "$1" -R 500000000 -p "$step" 10.64.0.2 2>&1 || true)
  echo "$out" > "$work/perfdhcp.last"
  # Sent DISCOVERs and received ACKs (the second exchange's "received").
  awk -v secs="$step" '
    /^\*\*\*Statistics for:/ { ex++ }
    /^sent packets:/ && ex == 1 { sent = $3 }
    /^received packets:/ && ex == 2 { acks = $3 }
    END { if (sent == 0) { print "0 100"; exit }
          printf "%.0f %.2f\n", acks / secs, 100 * (sent - acks) / sent }' <<< "$out"
}

declare -A best peak
read -r -a servers <<< "${SERVERS:-bootfleet bootfleet-etcd kea dnsmasq}"
if [[ " ${servers[*]} " == *" bootfleet-etcd "* ]]; then
  ip netns exec "$srv" taskset -c 0 etcd --data-dir "$work/etcd" --listen-client-urls http://127.0.0.1:2379 \
    --advertise-client-urls http://127.0.0.1:2379 --listen-peer-urls http://127.0.0.1:2380 > "$work/etcd.log" 2>&1 &
  etcd_pid=$!
  for _ in $(seq 50); do ip netns exec "$srv" curl -sf http://127.0.0.1:2379/health > /dev/null && break; sleep 0.2; done
fi
printf '%-10s %8s %10s %8s\n' server rate DORA/s drops%
for s in "${servers[@]}"; do
  best[$s]=0
  peak[$s]=0
  fails=0
  for r in "${rates[@]}"; do
    start "$s"
    read -r dora drops < <(measure "$r")
    stop_server
    printf '%-10s %8s %10s %8s\n' "$s" "$r" "$dora" "$drops"
    [ "$dora" -gt "${peak[$s]}" ] && peak[$s]=$dora
    if awk "BEGIN{exit !($drops < 1)}"; then
      [ "$dora" -gt "${best[$s]}" ] && best[$s]=$dora
      fails=0
    else
      fails=$((fails + 1))
      [ $fails -ge 2 ] && break
    fi
  done
done
echo
for s in "${servers[@]}"; do printf '%-10s best DORA/s under 1%% drops: %s (most at any drop rate: %s)\n' "$s" "${best[$s]}" "${peak[$s]}"; done
for s in kea dnsmasq; do
  awk -v a="${best[bootfleet]:-0}" -v b="${best[$s]:-0}" -v s="$s" 'BEGIN{ if (b > 0) printf "bootfleet / %s: %.2fx\n", s, a / b }'
done
awk -v a="${best[bootfleet-etcd]:-0}" -v b="${best[bootfleet]:-0}" 'BEGIN{ if (b > 0 && a > 0) printf "bootfleet-etcd / bootfleet: %.2fx\n", a / b }'
awk -v a="${best[bootfleet-etcd]:-0}" -v b="${best[kea]:-0}" 'BEGIN{ if (b > 0 && a > 0) printf "bootfleet-etcd / kea: %.2fx\n", a / b }'
