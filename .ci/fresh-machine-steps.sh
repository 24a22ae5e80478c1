#!/usr/bin/env bash
# What .ci/fresh-machine.sh runs inside its fresh chroot, from the
# project's root: every command of the README's tour, in order, then the
# README's test command's install step and build.
#
# The tour's commands are the README's lines that start with `$ ` between
# "## A tour" and the next "## " heading; `sudo ` is dropped (this runs as
# root). `bootfleet serve` runs on a rack's interface, which this machine
# does not have: it runs in a network namespace with a veth interface of
# the spec's name and address, until its /healthz answers 200 (or 60 s).
set -euo pipefail
cd "$(dirname "$0")/.."
started=$(date +%s)
say() { printf '[fresh-machine %4ds] %s\n' $(($(date +%s) - started)) "$*"; }

# Nothing the build or the tests need may be here before the README's
# commands install it: this is a new machine.
if dist/deps.sh --check build >/dev/null 2>&1; then
  say "the chroot already has the build packages: it is not a fresh machine"
  exit 1
fi

serve_in_namespace() {
  local spec=$1
  shift
  local iface server port
  iface=$(sed -n 's/^interface *= *"\(.*\)"/\1/p' "$spec" | head -1)
  server=$(sed -n 's/^server *= *"\(.*\)"/\1/p' "$spec" | head -1)
  port=$(sed -n 's/^http_port *= *\([0-9]*\)/\1/p' "$spec" | head -1)
  port=${port:-8080}
  ip netns add bf-tour
  ip -n bf-tour link set lo up
  ip -n bf-tour link add "$iface" type veth peer name bf-tour-peer
  ip -n bf-tour link set bf-tour-peer up
  ip -n bf-tour addr add "$server/24" dev "$iface"
  ip -n bf-tour link set "$iface" up
  ip netns exec bf-tour "$@" --state-dir /tmp/bf-tour-state >/tmp/bf-tour-serve.log 2>&1 &
  local pid=$! ok=0
  for _ in $(seq 1 120); do
    if ip netns exec bf-tour curl -sf -o /dev/null "http://$server:$port/healthz"; then ok=1; break; fi
    kill -0 "$pid" 2>/dev/null || break
    sleep 0.5
  done
  kill -INT "$pid" 2>/dev/null || true
  wait "$pid" || true
  ip netns del bf-tour
  if [ "$ok" != 1 ]; then
    cat /tmp/bf-tour-serve.log
    say "serve did not become healthy"
    return 1
  fi
  say "serve answered /healthz with 200"
}

mapfile -t tour < <(awk '/^## A tour/ { t = 1; next } /^## / { t = 0 } t && /^\$ / { sub(/^\$ /, ""); print }' README.md)
[ "${#tour[@]}" -gt 0 ] || { say "README.md has no tour commands"; exit 1; }
for line in "${tour[@]}"; do
  cmd=${line#sudo }
  say "tour: $cmd"
  case "$cmd" in
    *" serve "*)
      read -r -a words <<<"$cmd"
      spec=${words[2]}
      serve_in_namespace "$spec" "${words[@]}"
      ;;
    *) bash -euo pipefail -c "$cmd" && echo ;;
  esac
done

say "test command: install step and build (./test.sh --no-run)"
./test.sh --no-run
dist/deps.sh --check build cluster test
say "the README's commands work on a fresh machine"
