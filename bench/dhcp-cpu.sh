#!/usr/bin/env bash
# Where core 0's time goes at a fixed perfdhcp rate: the same rig as
# bench/dhcp.sh (bench/lib/dhcp-rig.sh: server and etcd pinned to core 0,
# perfdhcp to core 1), one STEP per server and rate, reading each process's
# CPU time (/proc/PID/stat), core 0's idle time (/proc/stat) and etcd's own
# counters (/metrics: transactions, WAL fsyncs and their total duration)
# before and after. Prints DORA/s and drops, then the share of core 0 each
# process used, core 0's idle share, and for etcd transactions and fsyncs
# per second, claims and leases per transaction (two per DORA) and the mean fsync. This is what
# BENCHMARKS.md's "what limits the etcd path" reads off. cpu_s/10k is the
# headline when perfdhcp, not the server, is the ceiling: the server's CPU
# seconds (user + system) per 10,000 DORA exchanges completed; +etcd/10k
# adds etcd's. SERVERS may include kea (kea-dhcp4, memfile) and dnsmasq.
# Needs root; installs what it compares with through dist/deps.sh.
# Usage: sudo [REPEAT=3] [SERVERS="bootfleet bootfleet-etcd"] bench/dhcp-cpu.sh [STEP_SECONDS] [RATES...]
set -euo pipefail
cd "$(dirname "$0")/.."
dist/deps.sh build cluster test bench
step=${1:-5}
shift || true
rates=("$@")
[ ${#rates[@]} -gt 0 ] || rates=(4000 8000)
repeat=${REPEAT:-1}
. bench/lib/dhcp-rig.sh
start_etcd
hz=$(getconf CLK_TCK)

# CPU ticks (user + system) a process has used.
ticks() { awk '{ print $14 + $15 }' "/proc/$1/stat" 2>/dev/null || echo 0; }
# Core 0's idle ticks (idle + iowait).
idle0() { awk '$1 == "cpu0" { print $5 + $6 }' /proc/stat; }
# etcd's counters: "txns fsyncs fsync_seconds".
etcd_counts() {
  ip netns exec "$srv" curl -sf http://10.66.0.1:2379/metrics | awk '
    /^etcd_mvcc_txn_total / || /^etcd_debugging_mvcc_txn_total / { t = $2 }
    /^etcd_disk_wal_fsync_duration_seconds_count / { f = $2 }
    /^etcd_disk_wal_fsync_duration_seconds_sum / { s = $2 }
    END { printf "%d %d %.6f\n", t, f, s }'
}

printf '%-15s %6s %5s %7s %6s %8s %7s %7s %10s %10s %7s %8s %9s\n' \
  server rate round DORA/s drops% server% etcd% idle0% cpu_s/10k +etcd/10k txn/s ops/txn fsync_ms
for r in "${rates[@]}"; do
  for round in $(seq "$repeat"); do
    for s in ${SERVERS:-bootfleet bootfleet-etcd}; do
      start "$s"
      read -r t0 f0 fs0 < <(etcd_counts)
      p0=$(ticks "$pid") e0=$(ticks "$etcd_pid") i0=$(idle0)
      out=$(ip netns exec "$cli" taskset -c 1 perfdhcp -4 -l bfbc -r "$r" -R 500000000 -p "$step" 10.64.0.2 2>&1 || true)
      p1=$(ticks "$pid") e1=$(ticks "$etcd_pid") i1=$(idle0)
      read -r t1 f1 fs1 < <(etcd_counts)
      stop_server
      awk -v secs="$step" -v hz="$hz" -v s="$s" -v r="$r" -v round="$round" \
        -v p=$((p1 - p0)) -v e=$((e1 - e0)) -v i=$((i1 - i0)) \
        -v t=$((t1 - t0)) -v f=$((f1 - f0)) -v fs="$fs0 $fs1" '
        /^\*\*\*Statistics for:/ { ex++ }
        /^sent packets:/ && ex == 1 { sent = $3 }
        /^received packets:/ && ex == 2 { acks = $3 }
        END {
          split(fs, d, " ")
          wall = secs * hz
          per = acks ? 10000 / acks / hz : 0
          printf "%-15s %6s %5s %7.0f %6.2f %8.1f %7.1f %7.1f %10.2f %10.2f %7.0f %8.1f %9.2f\n", s, r, round,
            acks / secs, sent ? 100 * (sent - acks) / sent : 100, 100 * p / wall, 100 * e / wall,
            100 * i / wall, p * per, (p + e) * per, t / secs, t ? acks * 2 / t : 0, f ? 1000 * (d[2] - d[1]) / f : 0
        }' <<< "$out"
    done
  done
done
