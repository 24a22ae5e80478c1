#!/usr/bin/env bash
# DHCP throughput: Kea's perfdhcp against bootfleet (embedded store, etcd,
# and two servers sharing one etcd), kea-dhcp4 (memfile backend) and
# dnsmasq, one at a time on the same veth pair in the same run. perfdhcp
# (in its own namespace, pinned to core 1) offers new clients at rising
# rates for STEP seconds each; the server (pinned to core 0) starts with an
# empty lease store at every step. Each rate is run REPEAT times, the
# servers alternating within a round; prints every step, then per server
# and rate the median DORA exchanges completed per second and drop ratio
# (with their spread), each server's highest rate whose median drops are
# under 1%, and the ratios.
# Lease stores live on disk in a temporary directory: bootfleet commits
# (fsync) every batch before its ACKs leave; Kea's memfile appends without
# fsync; dnsmasq rewrites its lease file. dnsmasq runs with --no-ping (else
# it pings every address before offering it, and answers almost nothing at
# these rates) and a 65,534-address range (with the 4M-address range the
# others get it reports "0 available" and answers nothing).
# bootfleet-etcd is bootfleet with `[state] backend = "etcd"`: its leases
# (and an OFFER's claim) go to an etcd (Debian's etcd-server) in the
# server's namespace on the server's core, a fresh key prefix per step.
# bootfleet-etcd2 is two such servers on one etcd, each loaded by its own
# perfdhcp at half the rate (its figure is the sum); on a two-core machine
# both servers and etcd share core 0, so it shows what sharing costs, not
# how it scales. See bench/lib/dhcp-rig.sh.
# Needs root; installs what it compares with through dist/deps.sh.
# Usage: sudo [REPEAT=3] [SERVERS="bootfleet kea"] bench/dhcp.sh [STEP_SECONDS] [RATES...]
set -euo pipefail
cd "$(dirname "$0")/.."
dist/deps.sh build cluster test bench
step=${1:-10}
shift || true
rates=("$@")
[ ${#rates[@]} -gt 0 ] || rates=(250 500 1000 2000 4000 6000 8000 10000 11000 12000 13000 14000 16000)
repeat=${REPEAT:-1}
. bench/lib/dhcp-rig.sh

# perfdhcp's counts from one run: "sent acks" (DISCOVERs sent, ACKs got).
counts() { # namespace, interface, rate, server, [perfdhcp options...]
  ip netns exec "$1" taskset -c 1 perfdhcp -4 -l "$2" -r "$3" -R 500000000 -p "$step" "${@:5}" "$4" 2>&1 | tee -a "$work/perfdhcp.last" |
    awk '/^\*\*\*Statistics for:/ { ex++ }
         /^sent packets:/ && ex == 1 { sent = $3 }
         /^received packets:/ && ex == 2 { acks = $3 }
         END { printf "%d %d\n", sent, acks }' || true
}

# One step: prints "dora_per_s drop_percent".
measure() { # server, rate
  : > "$work/perfdhcp.last"
  local sent acks s2 a2
  if [ "$1" = bootfleet-etcd2 ]; then
    # Its own clients: perfdhcp draws MACs from the same base otherwise
    # (and two started together draw the same ones).
    counts "$cli2" bfbc $(($2 / 2)) 10.64.0.4 -b mac=00:0c:02:02:03:04 > "$work/second" &
    local other=$!
    read -r sent acks < <(counts "$cli" bfbc $(($2 - $2 / 2)) 10.64.0.2)
    wait "$other"
    read -r s2 a2 < "$work/second"
    sent=$((sent + s2)) acks=$((acks + a2))
  else
    read -r sent acks < <(counts "$cli" bfbc "$2" 10.64.0.2)
  fi
  awk -v secs="$step" -v sent="$sent" -v acks="$acks" 'BEGIN {
    if (sent == 0) { print "0 100"; exit }
    printf "%.0f %.2f\n", acks / secs, 100 * (sent - acks) / sent }'
}

declare -A got_dora got_drops stopped
read -r -a servers <<< "${SERVERS:-bootfleet bootfleet-etcd bootfleet-etcd2 kea dnsmasq}"
printf '%-16s %8s %6s %10s %8s\n' server rate round DORA/s drops%
for r in "${rates[@]}"; do
  for round in $(seq "$repeat"); do
    for s in "${servers[@]}"; do
      [ -n "${stopped[$s]:-}" ] && continue
      start "$s"
      read -r dora drops < <(measure "$s" "$r")
      stop_server
      printf '%-16s %8s %6s %10s %8s\n' "$s" "$r" "$round" "$dora" "$drops"
      got_dora[$s,$r]="${got_dora[$s,$r]:-} $dora"
      got_drops[$s,$r]="${got_drops[$s,$r]:-} $drops"
    done
  done
  # A server whose median drops passed 5% is not taken to higher rates.
  for s in "${servers[@]}"; do
    [ -n "${got_drops[$s,$r]:-}" ] || continue
    m=$(tr ' ' '\n' <<< "${got_drops[$s,$r]:-}" | grep . | sort -g | awk '{v[NR]=$1} END{print (NR ? v[int((NR+1)/2)] : 100)}')
    awk "BEGIN{exit !($m > 5)}" && stopped[$s]=1
  done
done

median() { tr ' ' '\n' | grep -E '^[0-9.]+$' | sort -g | awk '{ v[NR] = $1 } END { if (NR) printf "%s %s %s\n", v[int((NR + 1) / 2)], v[1], v[NR]; else print "- - -" }'; }
echo
printf '%-16s %8s %22s %22s\n' server rate "DORA/s median (range)" "drops% median (range)"
declare -A best
for s in "${servers[@]}"; do
  best[$s]=0
  for r in "${rates[@]}"; do
    [ -n "${got_dora[$s,$r]:-}" ] || continue
    read -r dm dl dh < <(median <<< "${got_dora[$s,$r]}")
    read -r pm pl ph < <(median <<< "${got_drops[$s,$r]}")
    printf '%-16s %8s %22s %22s\n' "$s" "$r" "$dm ($dl-$dh)" "$pm ($pl-$ph)"
    if awk "BEGIN{exit !($pm < 1)}" && [ "$dm" -gt "${best[$s]}" ]; then best[$s]=$dm; fi
  done
done
echo
for s in "${servers[@]}"; do printf '%-16s best median DORA/s with median drops under 1%%: %s\n' "$s" "${best[$s]}"; done
ratio() { awk -v a="${best[$1]:-0}" -v b="${best[$2]:-0}" -v l="$1 / $2" 'BEGIN{ if (a > 0 && b > 0) printf "%s: %.2fx\n", l, a / b }'; }
ratio bootfleet kea
ratio bootfleet dnsmasq
ratio bootfleet-etcd bootfleet
ratio bootfleet-etcd2 bootfleet-etcd
ratio bootfleet-etcd kea
