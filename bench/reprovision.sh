#!/usr/bin/env bash
# `bootfleet reprovision` against tearing the cluster down and bringing it
# up again, the only way to boot a `cluster` node into a new configuration
# before: a cluster of N test-OS nodes (default 3) on TCG, RUNS rounds
# (default 3), alternating in one run:
#   reprovision: `reprovision --all` (network boot once, power-cycle through
#   libvirt, wait until every node phoned home again);
#   down + up:   `cluster down`, then `cluster up` (until every phone-home).
# After each reprovision, the per-stage times of the nodes' new boots
# (from `bootfleet nodes --json`). Medians and (min-max) at the end.
# Needs root and libvirtd (dist/start-libvirtd.sh).
# Usage: sudo bench/reprovision.sh [RUNS] [N]
set -euo pipefail
cd "$(dirname "$0")/.."
dist/deps.sh build cluster
runs=${1:-3}
n=${2:-3}
work=$(mktemp -d)
bin=$PWD/target/release/bootfleet
cleanup() {
  "$bin" -q --state-dir "$work/state" cluster down "$work/bf.toml" --images "$work/images" >/dev/null 2>&1 || true
  rm -rf "$work"
}
trap cleanup EXIT
dist/start-libvirtd.sh
cargo build --release --quiet
. bench/lib/facts.sh
facts qemu libvirtd
"$bin" -q images testos --images "$work/images" >/dev/null
{
  printf '[cluster]\nname = "bfrepro"\n[network]\ninterface = "bfb-repro"\nsubnet = "10.213.43.0/24"\nserver = "10.213.43.1"\n'
  printf '[boot]\ntestos = true\nconsole = ["ttyS0,115200n8"]\n'
  for i in $(seq 0 $((n - 1))); do
    printf '[[nodes]]\nname = "n%s"\nip = "10.213.43.%s"\nroles = ["%s"]\n' "$i" $((10 + i)) "$([ "$i" = 0 ] && echo etcd || echo worker)"
  done
  printf '[libvirt]\naccel = "tcg"\n'
} > "$work/bf.toml"
bf() { "$bin" -q --state-dir "$work/state" "$@"; }
secs() { local s=$(date +%s.%N); "$@" >/dev/null 2>&1 || { echo FAIL; return; }; awk "BEGIN{printf \"%.1f\", $(date +%s.%N) - $s}"; }
up() { bf cluster up "$work/bf.toml" --images "$work/images"; }
down() { bf cluster down "$work/bf.toml" --images "$work/images"; }
downup() { down && up; }
repro() { bf reprovision "$work/bf.toml" --all --timeout 10m; }

up >/dev/null 2>&1
ra=() da=()
stages=$work/stages
: > "$stages"
printf '%-4s %14s %12s\n' run reprovision "down + up"
for i in $(seq "$runs"); do
  r=$(secs repro)
  bf nodes "$work/bf.toml" --json |
    python3 -c 'import json,sys
for n in json.load(sys.stdin):
    for s in n["stages"]:
        print(s["stage"], s["ms"] / 1000)' >> "$stages"
  d=$(secs downup)
  ra+=("$r"); da+=("$d")
  printf '%-4s %13ss %11ss\n' "$i" "$r" "$d"
done
stat() { printf '%s\n' "$@" | grep -v FAIL | sort -n | awk '{v[NR]=$1} END{if (NR==0) print "FAIL"; else printf "%s (%s-%s)", v[int((NR+1)/2)], v[1], v[NR]}'; }
med() { printf '%s\n' "$@" | grep -v FAIL | sort -n | awk '{v[NR]=$1} END{print v[int((NR+1)/2)]}'; }
echo "median (min-max) over $runs runs, $n nodes:"
echo "  reprovision $(stat "${ra[@]}") s    down + up $(stat "${da[@]}") s"
awk -v a="$(med "${ra[@]}")" -v b="$(med "${da[@]}")" 'BEGIN{printf "  down + up time / reprovision time %.2fx\n", b / a}'
echo "stages of the reprovisioned boots (every node, every run), median (min-max) s:"
for s in dhcp script kernel initrd os_boot cloud_config booted; do
  vals=$(awk -v s="$s" '$1 == s {print $2}' "$stages")
  [ -n "$vals" ] || continue
  # shellcheck disable=SC2086
  printf '  %-13s %s\n' "$s" "$(stat $vals)"
done
