#!/usr/bin/env bash
# Renders a generated spec of N nodes (default 10,000) with a release build
# and reports wall time, nodes per second and peak memory (GNU time).
# There is no established tool that renders per-machine cloud-configs from
# one spec, so this has no peer to compare with; it tracks our own figure.
# Usage: bench/render.sh [NODES] [RUNS]
set -euo pipefail
cd "$(dirname "$0")/.."
nodes=${1:-10000}
runs=${2:-5}
command -v /usr/bin/time >/dev/null || { echo "needs GNU time: apt-get install time" >&2; exit 1; }
cargo build --release --quiet
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
python3 bench/gen_spec.py "$nodes" > "$work/spec.toml"
mkdir -p "$work/state"
./target/release/bootfleet -q --state-dir "$work/state" check "$work/spec.toml" >/dev/null
best=""
for i in $(seq "$runs"); do
  rm -rf "$work/out"
  /usr/bin/time -f "%e %M" -o "$work/time" ./target/release/bootfleet -q --state-dir "$work/state" render "$work/spec.toml" --out "$work/out" 2>/dev/null
  read -r secs kib < "$work/time"
  echo "run $i: ${secs}s, peak RSS ${kib} KiB"
  if [ -z "$best" ] || awk "BEGIN{exit !($secs < $best)}"; then best=$secs; best_kib=$kib; fi
done
files=$(find "$work/out" -type f | wc -l)
bytes=$(du -sb "$work/out" | cut -f1)
rate=$(awk "BEGIN{printf \"%.0f\", $nodes / ($best > 0 ? $best : 0.01)}")
echo "render of $nodes nodes ($files files, $((bytes / 1024 / 1024)) MiB) to disk: best ${best}s of $runs = $rate nodes/s, peak RSS $((best_kib / 1024)) MiB"
