#!/usr/bin/env bash
# A site that has grown: for each store (embedded, etcd) and each size N,
# a fresh store is seeded with N leases and N/10 enrolled machines (at
# most 10,000)
# (examples/seed_site.rs), then `bootfleet dhcp` is started on it in the
# rig's server namespace (bench/lib/dhcp-rig.sh: core 0, etcd beside it)
# and timed from exec to its "listening" line (every lease read and in
# memory), its peak memory (VmHWM) read once it listens; then, with the
# server stopped, `bootfleet leases SPEC --json` lists the site (time, and
# the count it printed). Each size runs ROUNDS times (default 3); medians
# and ranges at the end.
# Needs root; installs what it needs through dist/deps.sh.
# Usage: sudo [ROUNDS=3] [STORES="embedded etcd"] bench/scale.sh [N ...]   (default 10000 100000 1000000)
set -euo pipefail
cd "$(dirname "$0")/.."
dist/deps.sh build cluster test bench
sizes=("$@")
[ ${#sizes[@]} -gt 0 ] || sizes=(10000 100000 1000000)
rounds=${ROUNDS:-3}
. bench/lib/dhcp-rig.sh
cargo build --release --quiet --example seed_site
seed=./target/release/examples/seed_site
bin=./target/release/bootfleet
start_etcd

now() { date +%s.%N; }
results=$work/results
: > "$results"
printf '%-9s %8s %5s %9s %9s %9s %10s %8s\n' store leases round seed_s ready_s rss_MiB leases_s listed
for n in "${sizes[@]}"; do
  for round in $(seq "$rounds"); do
    for store in ${STORES:-embedded etcd}; do
      state=$work/scale-state
      rm -rf "$state"
      mkdir -p "$state"
      if [ "$store" = etcd ]; then
        etcd_spec 10.64.0.2 "/scale/$n-$round-$RANDOM" > "$work/scale.toml"
      else
        cp "$work/spec.toml" "$work/scale.toml"
      fi
      t0=$(now)
      machines=$((n / 10 < 10000 ? n / 10 : 10000))
      ip netns exec "$srv" "$seed" "$work/scale.toml" "$state" "$n" "$machines" 2> "$work/seed.log"
      t1=$(now)
      out=$work/dhcp.out
      : > "$out"
      ip netns exec "$srv" taskset -c 0 $bin -q --state-dir "$state" dhcp "$work/scale.toml" > "$out" 2> "$work/dhcp.err" &
      pid=$!
      until grep -q listening "$out" 2>/dev/null; do
        kill -0 "$pid" 2>/dev/null || { cat "$work/dhcp.err" >&2; echo "bootfleet dhcp exited on $n leases ($store)" >&2; exit 1; }
        sleep 0.01
      done
      t2=$(now)
      rss=$(awk '/^VmHWM:/ { printf "%.0f", $2 / 1024 }' "/proc/$pid/status")
      stop_server
      t3=$(now)
      listed=$(ip netns exec "$srv" $bin -q --state-dir "$state" leases "$work/scale.toml" --json | python3 -c 'import json,sys; print(len(json.load(sys.stdin)))')
      t4=$(now)
      line=$(awk -v s="$store" -v n="$n" -v r="$round" -v a="$t0" -v b="$t1" -v c="$t2" -v d="$t3" -v e="$t4" \
        -v m="$rss" -v l="$listed" 'BEGIN { printf "%-9s %8d %5d %9.2f %9.3f %9d %10.3f %8d", s, n, r, b - a, c - b, m, e - d, l }')
      echo "$line"
      echo "$line" >> "$results"
      [ "$listed" -ge "$n" ] || { echo "leases listed $listed of $n" >&2; exit 1; }
    done
  done
done

echo
echo "medians (range) of $rounds rounds:"
printf '%-9s %8s %20s %20s %20s\n' store leases ready_s rss_MiB leases_s
python3 - "$results" <<'PY'
import sys, statistics, collections
rows = collections.defaultdict(list)
for line in open(sys.argv[1]):
    s, n, r, seed, ready, rss, lst, listed = line.split()
    rows[(s, int(n))].append((float(ready), float(rss), float(lst)))
def cell(v):
    return "%.3f (%.3f-%.3f)" % (statistics.median(v), min(v), max(v))
for (s, n), v in sorted(rows.items(), key=lambda kv: (kv[0][1], kv[0][0])):
    ready, rss, lst = zip(*v)
    print("%-9s %8d %20s %20s %20s" % (s, n, cell(ready), "%d (%d-%d)" % (statistics.median(rss), min(rss), max(rss)), cell(lst)))
PY
