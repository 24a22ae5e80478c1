#!/usr/bin/env bash
# Time from QEMU start to the guest printing its cloud-config: the same VM
# (TCG, BIOS, virtio, QEMU's iPXE ROM) booting the test OS
# (src/images/testos.sh) from `bootfleet serve`, then from dnsmasq (DHCP)
# plus python3's static HTTP server serving the same rendered files, and
# from dnsmasq with --enable-ra (router advertisements for a ULA prefix,
# which end iPXE's IPv6 wait as bootfleet's "no router here" does) plus the
# same HTTP server, in one run, RUNS times each alternating. Prints each
# run and the medians.
# Needs root; installs what it compares with through dist/deps.sh.
# Usage: sudo bench/boot.sh [RUNS]
set -euo pipefail
cd "$(dirname "$0")/.."
dist/deps.sh build cluster test bench
runs=${1:-3}
work=$(mktemp -d)
ns=bfboot-$$
pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; ip netns del "$ns" 2>/dev/null || true; rm -rf "$work"; }
trap cleanup EXIT
cargo build --release --quiet
. bench/lib/facts.sh
facts dnsmasq qemu
src/images/testos.sh target/tmp/testos >/dev/null
mac=52:54:00:e2:00:01
mkdir -p "$work/images/testos"
cp target/tmp/testos/vmlinuz target/tmp/testos/initrd.img "$work/images/testos/"
cat > "$work/spec.toml" <<SPEC
[cluster]
name = "bench"
[network]
interface = "br0"
subnet = "10.98.0.0/24"
server = "10.98.0.2"
dynamic_range = ["10.98.0.100", "10.98.0.150"]
[boot]
kernel = "testos/vmlinuz"
initrd = "testos/initrd.img"
console = ["ttyS0"]
[[nodes]]
name = "e1"
mac = "$mac"
ip = "10.98.0.11"
roles = ["etcd", "worker"]
SPEC
# The static side serves the same rendered files at the same paths.
./target/release/bootfleet -q --state-dir "$work/state" render "$work/spec.toml" --out "$work/out" >/dev/null
mkdir -p "$work/www/assets" "$work/www/cloud-config"
cp -r "$work/images/testos" "$work/www/assets/"
cp "$work/out/ipxe/e1.ipxe" "$work/www/boot.ipxe"
cp "$work/out/cloud-config/e1.yml" "$work/www/cloud-config/e1"

ip netns add "$ns"
ip -n "$ns" link set lo up
ip -n "$ns" link add br0 type bridge
ip -n "$ns" addr add 10.98.0.2/24 dev br0
ip -n "$ns" addr add fd00:98::2/64 dev br0
ip -n "$ns" link set br0 up
ip -n "$ns" tuntap add bt0 mode tap
ip -n "$ns" link set bt0 master br0 up

boot_once() { # prints seconds from qemu start to the cloud-config's end marker, or FAIL
  local log=$work/serial.log start end
  rm -f "$log"
  start=$(date +%s.%N)
  ip netns exec "$ns" qemu-system-x86_64 -accel tcg -m 384 -nographic -monitor none -no-reboot -boot n \
    -netdev tap,id=n0,ifname=bt0,script=no,downscript=no -device "virtio-net-pci,netdev=n0,mac=$mac" \
    -serial "file:$log" >/dev/null 2>&1 &
  local q=$!
  for _ in $(seq 1200); do
    if grep -q "=====END CLOUD-CONFIG=====" "$log" 2>/dev/null; then
      end=$(date +%s.%N)
      kill "$q" 2>/dev/null; wait "$q" 2>/dev/null || true
      if grep -q "e1 ($mac)" "$log"; then awk "BEGIN{printf \"%.1f\", $end - $start}"; else echo FAIL; fi
      return
    fi
    sleep 0.1
  done
  kill "$q" 2>/dev/null; wait "$q" 2>/dev/null || true
  echo FAIL
}

with_bootfleet() {
  rm -rf "$work/state/leases.redb" "$work/state/boot.redb"
  ip netns exec "$ns" ./target/release/bootfleet -q --state-dir "$work/state" serve "$work/spec.toml" --images "$work/images" > /dev/null &
  local p=$!
  sleep 1
  boot_once
  kill "$p"; wait "$p" 2>/dev/null || true
}

with_dnsmasq() { # [ra]: also advertise fd00:98::/64 (--enable-ra)
  local ra=()
  [ "${1:-}" = ra ] && ra=(--enable-ra --dhcp-range=fd00:98::,ra-only)
  ip netns exec "$ns" dnsmasq --no-daemon --port=0 --interface=br0 --bind-interfaces --no-ping \
    --dhcp-range=10.98.0.100,10.98.0.150,1h --dhcp-host="$mac,10.98.0.11" "${ra[@]}" \
    --dhcp-boot=http://10.98.0.2:8080/boot.ipxe --dhcp-leasefile="$work/dnsmasq.leases" --log-facility=/dev/null --quiet-dhcp 2>/dev/null &
  local d=$!
  ip netns exec "$ns" python3 -m http.server 8080 --bind 10.98.0.2 --directory "$work/www" > /dev/null 2>&1 &
  local h=$!
  sleep 1
  boot_once
  kill "$d" "$h"; wait "$d" "$h" 2>/dev/null || true
  rm -f "$work/dnsmasq.leases"
}

a=() b=() c=()
printf '%-5s %12s %22s %25s\n' run bootfleet "dnsmasq+http.server" "dnsmasq --enable-ra+http"
for i in $(seq "$runs"); do
  x=$(with_bootfleet); y=$(with_dnsmasq); z=$(with_dnsmasq ra)
  a+=("$x"); b+=("$y"); c+=("$z")
  printf '%-5s %11ss %21ss %24ss\n' "$i" "$x" "$y" "$z"
done
median() { printf '%s\n' "$@" | grep -v FAIL | sort -n | awk '{v[NR]=$1} END{if (NR==0) print "FAIL"; else print v[int((NR+1)/2)]}'; }
spread() { printf '%s\n' "$@" | grep -v FAIL | sort -n | awk '{v[NR]=$1} END{if (NR>0) printf "%s-%s", v[1], v[NR]}'; }
ma=$(median "${a[@]}"); mb=$(median "${b[@]}"); mc=$(median "${c[@]}")
echo "median (spread): bootfleet ${ma}s ($(spread "${a[@]}")), dnsmasq+http.server ${mb}s ($(spread "${b[@]}")), dnsmasq --enable-ra+http.server ${mc}s ($(spread "${c[@]}"))"
awk -v a="$ma" -v b="$mb" -v c="$mc" 'BEGIN{ if (a > 0 && b > 0 && c > 0) printf "dnsmasq / bootfleet: %.2fx; dnsmasq --enable-ra / bootfleet: %.2fx\n", b / a, c / a }'
