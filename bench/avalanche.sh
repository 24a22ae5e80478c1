#!/usr/bin/env bash
# DHCP avalanche: Kea's perfdhcp --scenario avalanche starts N new clients
# at once and retries each with back-off until every one holds a lease;
# the time until the last one does, per server, in the same run: bootfleet
# (embedded store), bootfleet with `[state] backend = "etcd"` (etcd in the
# server's namespace, on the server's core) and kea-dhcp4 (memfile on
# disk). Same namespaces, veth pair, pinning and spec as bench/dhcp.sh
# (bench/lib/dhcp-rig.sh); a fresh lease store for every run. Prints each run and the medians.
# Each size runs twice: with the machine's default socket receive buffer
# (net.core.rmem_default, 208 KiB here), and with it raised to 16 MiB for
# every socket (perfdhcp's and the servers' alike; restored afterwards).
# perfdhcp receives the answers for all N clients on one socket: with the
# default buffer, a server that answers a burst faster than perfdhcp reads
# loses answers in perfdhcp's own buffer (nstat in its namespace counts
# them as UdpRcvbufErrors), and the retries measure perfdhcp; N real
# machines each have a buffer of their own. RMEMS="default" runs one.
# Needs root; installs what it compares with through dist/deps.sh.
# Usage: sudo bench/avalanche.sh [RUNS] [N ...]   (default: 3 runs of 1000 and 10000)
set -euo pipefail
cd "$(dirname "$0")/.."
dist/deps.sh build cluster test bench
runs=${1:-3}
shift || true
sizes=("$@")
[ ${#sizes[@]} -gt 0 ] || sizes=(1000 10000)
. bench/lib/dhcp-rig.sh
start_etcd

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
read -r -a rmems <<< "${RMEMS:-default 16777216}"
rmem_was=$(cat /proc/sys/net/core/rmem_default)
trap 'sysctl -qw net.core.rmem_default="$rmem_was"; cleanup' EXIT
printf '%-15s %9s %8s %4s %10s\n' server rcvbuf clients run seconds
for b in "${rmems[@]}"; do
  if [ "$b" = default ]; then sysctl -qw net.core.rmem_default="$rmem_was"; else sysctl -qw net.core.rmem_default="$b"; fi
  for n in "${sizes[@]}"; do
    for r in $(seq "$runs"); do
      for s in "${servers[@]}"; do
        start "$s"
        t=$(avalanche "$n")
        stop_server
        printf '%-15s %9s %8s %4s %10s\n' "$s" "$b" "$n" "$r" "$t"
        all[$s,$b,$n]="${all[$s,$b,$n]:-} $t"
      done
    done
  done
done
echo
median() { tr ' ' '\n' | grep -E '^[0-9.]+$' | sort -n | awk '{ v[NR] = $1 } END { if (NR) print v[int((NR + 1) / 2)], "(" v[1] "-" v[NR] ")"; else print "-" }'; }
for b in "${rmems[@]}"; do
  for n in "${sizes[@]}"; do
    for s in "${servers[@]}"; do
      printf '%-15s rcvbuf %9s %8s clients: median %s s\n' "$s" "$b" "$n" "$(echo "${all[$s,$b,$n]}" | median)"
    done
  done
done
