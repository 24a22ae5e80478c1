#!/usr/bin/env bash
# Renders a generated spec of N nodes (default 10,000; 3 etcd members, the
# rest workers with 10 browsers and viewers each) with a release build, and
# reports the best wall time of RUNS, nodes per second and peak memory for:
#   check   every file rendered and every cloud-config validated, in memory
#   render  the same, then written to a tmpfs directory (disk speed on these
#           machines varies 5x from run to run, so it is left out)
# No established tool renders per-machine cloud-configs from one spec, so
# there is no peer figure; this tracks our own.
# Usage: bench/render.sh [NODES] [RUNS]
set -euo pipefail
cd "$(dirname "$0")/.."
nodes=${1:-10000}
runs=${2:-5}
dist/deps.sh --check test || exit 1
cargo build --release --quiet
. bench/lib/facts.sh
facts 
work=$(mktemp -d)
out=$(mktemp -d -p /dev/shm 2>/dev/null || mktemp -d)
trap 'rm -rf "$work" "$out"' EXIT
python3 bench/gen_spec.py "$nodes" > "$work/spec.toml"
mkdir -p "$work/state"
bin=./target/release/bootfleet

measure() { # name, command...
  local name=$1 best="" best_kib=0 secs kib
  shift
  for _ in $(seq "$runs"); do
    rm -rf "$out/files"
    /usr/bin/time -f "%e %M" -o "$work/time" "$@" >/dev/null 2>&1
    read -r secs kib < "$work/time"
    if [ -z "$best" ] || awk "BEGIN{exit !($secs < $best)}"; then best=$secs; best_kib=$kib; fi
  done
  printf '%-7s %6d nodes: best %5.2fs of %d = %6.0f nodes/s, peak RSS %d MiB\n' \
    "$name" "$nodes" "$best" "$runs" "$(awk "BEGIN{print $nodes / ($best > 0 ? $best : 0.01)}")" $((best_kib / 1024))
}

measure check "$bin" -q --state-dir "$work/state" check "$work/spec.toml"
measure render "$bin" -q --state-dir "$work/state" render "$work/spec.toml" --out "$out/files"
"$bin" -q --state-dir "$work/state" render "$work/spec.toml" --out "$out/files" 2>/dev/null
echo "output: $(find "$out/files" -type f | wc -l) files, $(du -sm "$out/files" | cut -f1) MiB"
