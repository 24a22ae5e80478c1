#!/usr/bin/env bash
# DHCP avalanche: Kea's perfdhcp --scenario avalanche starts N new clients
# at once and retries each with back-off until every one holds a lease;
# the time until the last one does, per server, in the same run: bootfleet
# (embedded store), bootfleet with `[state] backend = "etcd"` (etcd in the
# server's namespace, on the server's core) and kea-dhcp4 (memfile on
# disk). Same namespaces, veth pair, pinning and spec as bench/dhcp.sh
# (bench/lib/dhcp-rig.sh); a fresh lease store for every run. Prints each run and the medians.
# Needs root and: apt-get install kea-admin kea-dhcp4-server etcd-server iproute2
# Usage: sudo bench/avalanche.sh [RUNS] [N ...]   (default: 3 runs of 1000 and 10000)
set -euo pipefail
cd "$(dirname "$0")/.."
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
