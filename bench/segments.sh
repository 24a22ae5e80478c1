#!/usr/bin/env bash
# DHCP across relayed segments: what spreading the same requests over 1, 2
# or 16 relayed segments costs bootfleet. One spec of 16 relayed segments
# (rack1..rack16, each 10.(100+k).0.0/16 with a pool of 65,279 addresses)
# in every run; 16 perfdhcp processes act as the relays (each with its own
# giaddr, its own clients, pinned to core 1), their giaddrs all in rack1,
# half in rack1 and half in rack2, or one in each rack. The server
# (`bootfleet dhcp`, embedded store, fresh for every run) is pinned to
# core 0. Only the spread changes between runs: the client processes,
# their rates and the server's configuration stay the same.
#  - cpu: RATE DORA/s in all (RATE/16 per relay) for STEP seconds; the
#    server's CPU seconds (user + system, /proc/PID/stat) per 10,000 DORA
#    exchanges completed, and the ratio to the one-segment figure.
#  - avalanche: CLIENTS new clients at once (CLIENTS/16 per relay,
#    perfdhcp --scenario avalanche, retried with back-off until each holds
#    a lease); the seconds until the last relay's last client did.
# The spreads alternate within each of REPEAT rounds; prints every run,
# then medians with their spread and the ratios.
# Needs root; installs what it uses through dist/deps.sh.
# Usage: sudo [REPEAT=3] [RATE=2000] [STEP=5] [CLIENTS=10000] bench/segments.sh
set -euo pipefail
cd "$(dirname "$0")/.."
dist/deps.sh build cluster test bench
cargo build --release --quiet
rate=${RATE:-2000} step=${STEP:-5} repeat=${REPEAT:-3} clients=${CLIENTS:-10000}
relays=16
work=$(mktemp -d)
srv=bfg-srv-$$ cli=bfg-cli-$$
pid=
cleanup() {
  [ -n "$pid" ] && kill "$pid" 2>/dev/null || true
  for n in "$srv" "$cli"; do ip netns del "$n" 2>/dev/null || true; done
  rm -rf "$work"
}
trap cleanup EXIT

ip netns add "$srv"; ip netns add "$cli"
ip link add bfgs netns "$srv" type veth peer name bfgc netns "$cli"
ip -n "$srv" addr add 10.64.0.2/16 dev bfgs; ip -n "$srv" link set bfgs up; ip -n "$srv" link set lo up
ip -n "$cli" addr add 10.64.0.3/16 dev bfgc; ip -n "$cli" link set bfgc up; ip -n "$cli" link set lo up

# giaddr of relay j (1..16) for a spread over n segments: rack ((j-1) % n) + 1.
giaddr() { # spread, relay
  echo "10.$((100 + ($2 - 1) % $1 + 1)).0.$2"
}
for n in 1 2 16; do
  for j in $(seq $relays); do
    g=$(giaddr "$n" "$j")
    ip -n "$cli" addr add "$g/32" dev bfgc 2>/dev/null || true
    ip -n "$srv" route replace "$g/32" via 10.64.0.3
  done
done

{
  cat <<SPEC
[cluster]
name = "segbench"
[network]
interface = "bfgs"
subnet = "10.64.0.0/16"
server = "10.64.0.2"
lease_time = "1h"
router_advertisements = false
[boot]
kernel = "flatcar_production_pxe.vmlinuz"
initrd = "flatcar_production_pxe_image.cpio.gz"
SPEC
  for k in $(seq $relays); do
    printf '[[segments]]\nname = "rack%d"\nsubnet = "10.%d.0.0/16"\nrelay = true\ngateway = "10.%d.0.1"\ndynamic_range = ["10.%d.1.0", "10.%d.255.254"]\n' \
      "$k" $((100 + k)) $((100 + k)) $((100 + k)) $((100 + k))
  done
} > "$work/spec.toml"

start() {
  rm -rf "$work/state"; mkdir -p "$work/state"
  ip netns exec "$srv" taskset -c 0 "${CARGO_TARGET_DIR:-target}/release/bootfleet" -q --state-dir "$work/state" dhcp "$work/spec.toml" > /dev/null &
  pid=$!
  for _ in $(seq 50); do
    ip netns exec "$srv" ss -Hlun 'sport = :67' | grep -q . && return 0
    sleep 0.1
  done
  echo "bootfleet did not start" >&2; exit 1
}
stop() { kill "$pid" 2>/dev/null || true; wait "$pid" 2>/dev/null || true; pid=; }
ticks() { awk '{ print $14 + $15 }' "/proc/$1/stat" 2>/dev/null || echo 0; }

# Runs `perfdhcp ARGS` as each of the 16 relays of `spread` at once; their
# outputs in $work/out.J.
relays() { # spread, perfdhcp args...
  local n=$1 j pids=()
  shift
  for j in $(seq $relays); do
    ip netns exec "$cli" taskset -c 1 perfdhcp -4 -l "$(giaddr "$n" "$j")" -b "mac=00:$(printf %02x "$j"):01:02:03:04" "$@" 10.64.0.2 > "$work/out.$j" 2>&1 &
    pids+=($!)
  done
  for p in "${pids[@]}"; do wait "$p" || true; done
}

# ACKs the relays received, in all.
acks() {
  cat "$work"/out.* | awk '/^\*\*\*Statistics for:/ { ex++ } /^received packets:/ && ex % 2 == 0 { a += $3 } END { print a + 0 }'
}

hz=$(getconf CLK_TCK)
declare -A cpu took
echo "machine: $(nproc) cores, load $(cut -d' ' -f1-3 /proc/loadavg), $(uname -r); bootfleet $(git rev-parse --short HEAD 2>/dev/null || echo '?'); perfdhcp $(perfdhcp -v 2>&1 | head -1)"
printf '%-10s %8s %6s %8s %10s %11s\n' test segments round DORA/s cpu_s/10k seconds
for round in $(seq "$repeat"); do
  for n in 1 2 16; do
    start
    p0=$(ticks "$pid")
    relays "$n" -r $((rate / relays)) -R 500000000 -p "$step"
    p1=$(ticks "$pid")
    stop
    a=$(acks)
    c=$(awk -v t=$((p1 - p0)) -v a="$a" -v hz="$hz" 'BEGIN { printf "%.3f", a ? t / hz * 10000 / a : 0 }')
    printf '%-10s %8s %6s %8.0f %10s %11s\n' cpu "$n" "$round" "$(awk -v a="$a" -v s="$step" 'BEGIN { print a / s }')" "$c" -
    cpu[$n]="${cpu[$n]:-} $c"
  done
  for n in 1 16; do
    start
    relays "$n" --scenario avalanche -R $((clients / relays))
    stop
    # "It took 00:00:02.213189 to provision 625 clients.": the last relay's.
    t=$(cat "$work"/out.* | awk '/^It took/ { split($3, t, ":"); v = t[1] * 3600 + t[2] * 60 + t[3]; if (v > m) m = v; n++ }
      END { if (n < '"$relays"') print "fail"; else printf "%.2f", m }')
    printf '%-10s %8s %6s %8s %10s %11s\n' avalanche "$n" "$round" - - "$t"
    took[$n]="${took[$n]:-} $t"
  done
done
echo
median() { tr ' ' '\n' | grep -E '^[0-9.]+$' | sort -n | awk '{ v[NR] = $1 } END { if (NR) print v[int((NR + 1) / 2)], "(" v[1] "-" v[NR] ")"; else print "-" }'; }
first() { echo "$1" | cut -d' ' -f1; }
base=$(first "$(median <<< "${cpu[1]}")")
for n in 1 2 16; do
  m=$(median <<< "${cpu[$n]}")
  printf 'cpu       %2s segments: %s s per 10k DORA, %s of one segment\n' "$n" "$m" \
    "$(awk -v a="$(first "$m")" -v b="$base" 'BEGIN { printf "%.3fx", b ? a / b : 0 }')"
done
base=$(first "$(median <<< "${took[1]}")")
for n in 1 16; do
  m=$(median <<< "${took[$n]}")
  printf 'avalanche %2s segments: %s s for %s clients, %s of one segment\n' "$n" "$m" "$clients" \
    "$(awk -v a="$(first "$m")" -v b="$base" 'BEGIN { printf "%.3fx", b ? a / b : 0 }')"
done
