#!/usr/bin/env bash
# Boot storm: N simulated machines start booting at once, each in its own
# network namespace on a veth into one bridge: DHCP with PXE options
# (busybox udhcpc, BIOS arch, PXEClient), the boot loader it is given over
# TFTP (curl, blksize 1468, undionly.kpxe), then a 12 MiB kernel and a
# 64 MiB initrd over HTTP (curl). Served by `bootfleet serve` and, in the
# same run, by dnsmasq (DHCP + TFTP) with nginx (HTTP) from the same files.
# Reports per server and N: makespan (first start to last finish), the
# per-machine p50/p95, and failures.
# Needs root; installs what it compares with through dist/deps.sh.
# Usage: sudo bench/storm.sh [N ...]   (default: 50 100 200)
#        sudo BOOTFLEET_BIN=old/bootfleet bench/storm.sh 200   (another build)
set -euo pipefail
cd "$(dirname "$0")/.."
dist/deps.sh build cluster test bench
sizes=("$@")
[ ${#sizes[@]} -eq 0 ] && sizes=(50 100 200)
max=0; for n in "${sizes[@]}"; do [ "$n" -gt "$max" ] && max=$n; done
[ "$max" -le 200 ] || { echo "at most 200 machines (one /24)" >&2; exit 2; }
work=$(mktemp -d)
srv=bfstorm-$$
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  for i in $(seq 0 $((max - 1))); do ip netns del "bfs$$-$i" 2>/dev/null || true; done
  ip netns del "$srv" 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT
cargo build --release --quiet
. bench/lib/facts.sh
facts dnsmasq nginx curl
# BOOTFLEET_BIN=path runs another build of bootfleet (to compare builds).
bin=$(realpath "${BOOTFLEET_BIN:-target/release/bootfleet}")

# The files: a 12 MiB kernel, a 64 MiB initrd and the BIOS loader.
mkdir -p "$work/images/k" "$work/res"
head -c 12M /dev/urandom > "$work/images/k/vmlinuz"
head -c 64M /dev/urandom > "$work/images/k/initrd.img"
if [ -f /usr/lib/ipxe/undionly.kpxe ]; then cp /usr/lib/ipxe/undionly.kpxe "$work/images/"; else head -c 70K /dev/urandom > "$work/images/undionly.kpxe"; fi
mac() { printf '02:bf:00:00:%02x:%02x' $(($1 / 256)) $(($1 % 256)); }
{
  cat <<SPEC
[cluster]
name = "storm"
[network]
interface = "br0"
subnet = "10.97.0.0/24"
server = "10.97.0.2"
dynamic_range = ["10.97.0.220", "10.97.0.250"]
[boot]
kernel = "k/vmlinuz"
initrd = "k/initrd.img"
SPEC
  for i in $(seq 0 $((max - 1))); do
    role='"worker"'; [ "$i" = 0 ] && role='"etcd", "worker"'
    printf '[[nodes]]\nname = "m%d"\nmac = "%s"\nip = "10.97.0.%d"\nroles = [%s]\n' "$i" "$(mac "$i")" $((10 + i)) "$role"
  done
} > "$work/spec.toml"
for i in $(seq 0 $((max - 1))); do echo "$(mac "$i"),10.97.0.$((10 + i))"; done > "$work/dnsmasq.hosts"
cat > "$work/nginx.conf" <<NGINX
user root;
worker_processes 2;
pid $work/nginx.pid;
error_log $work/nginx.err;
events { worker_connections 4096; }
http {
  access_log off;
  sendfile on;
  tcp_nopush on;
  client_body_temp_path $work/nginx-tmp;
  server { listen 10.97.0.2:8080; root $work/images; }
}
NGINX
# What udhcpc runs once bound: take the address, note the boot file.
cat > "$work/bound.sh" <<'SH'
#!/bin/sh
[ "$1" = bound ] || exit 0
ip addr add "$ip/24" dev "$interface"
echo "$siaddr $boot_file" > "$BF_OUT"
SH
chmod +x "$work/bound.sh"

# The segment: a bridge in the server's namespace, a veth per machine.
ip netns add "$srv"
ip -n "$srv" link set lo up
ip -n "$srv" link add br0 type bridge
ip -n "$srv" addr add 10.97.0.2/24 dev br0
ip -n "$srv" link set br0 up
for i in $(seq 0 $((max - 1))); do
  ns=bfs$$-$i
  ip netns add "$ns"
  ip -n "$srv" link add "v$i" type veth peer name eth0 netns "$ns"
  ip -n "$srv" link set "v$i" master br0 up
  ip -n "$ns" link set lo up
  ip -n "$ns" link set eth0 address "$(mac "$i")" up
done

machine() { # $1 index, $2 HTTP path prefix; writes "start end result dhcp tftp http"
  local ns=bfs$$-$1 out=$work/res/$1.res t0 t1 t2 t3 siaddr file
  t0=$(date +%s.%N)
  if ! BF_OUT=$work/res/$1.boot ip netns exec "$ns" busybox udhcpc -i eth0 -f -q -n -t 20 -T 2 \
      -x 0x5d:0000 -V PXEClient:Arch:00000:UNDI:002001 -s "$work/bound.sh" >/dev/null 2>&1; then
    echo "$t0 0 dhcp" > "$out"; return
  fi
  t1=$(date +%s.%N)
  read -r siaddr file < "$work/res/$1.boot"
  ip netns exec "$ns" curl -sf --max-time 120 --tftp-blksize 1468 "tftp://$siaddr/$file" -o /dev/null || { echo "$t0 0 tftp" > "$out"; return; }
  t2=$(date +%s.%N)
  for f in k/vmlinuz k/initrd.img; do
    ip netns exec "$ns" curl -sf --max-time 300 "http://10.97.0.2:8080$2/$f" -o /dev/null || { echo "$t0 0 http" > "$out"; return; }
  done
  t3=$(date +%s.%N)
  echo "$t0 $t3 ok $t1 $t2" > "$out"
}

storm() { # $1 N, $2 prefix; prints "makespan p50 p95 failures"
  rm -f "$work"/res/*
  for i in $(seq 0 $(($1 - 1))); do ip -n "bfs$$-$i" addr flush dev eth0; done
  local ms=()
  for i in $(seq 0 $(($1 - 1))); do machine "$i" "$2" & ms+=($!); done
  wait "${ms[@]}"
  local first last fails
  first=$(cat "$work"/res/*.res | awk '{print $1}' | sort -n | head -1)
  last=$(cat "$work"/res/*.res | awk '$3 == "ok" {print $2}' | sort -n | tail -1)
  fails=$(cat "$work"/res/*.res | awk '$3 != "ok"' | wc -l)
  # Median of each phase, for where the time goes.
  local phases
  phases=$(for col in '$4 - $1' '$5 - $4' '$2 - $5'; do
    cat "$work"/res/*.res | awk "\$3 == \"ok\" {print $col}" | sort -n | awk '{d[++n]=$1} END{printf "%.2f ", n ? d[int((n+1)/2)] : 0}'
  done)
  cat "$work"/res/*.res | awk '$3 == "ok" {print $2 - $1}' | sort -n | awk -v first="$first" -v last="$last" -v fails="$fails" -v phases="$phases" '
    { d[++n] = $1 }
    END {
      if (n == 0) { printf "FAIL - - %d - - -\n", fails; exit }
      printf "%.1f %.1f %.1f %d %s\n", last - first, d[int((n + 1) / 2)], d[int(n * 0.95 + 0.999)], fails, phases
    }'
}

with_bootfleet() { # $1 N
  rm -rf "$work/state"
  ip netns exec "$srv" "$bin" -q --state-dir "$work/state" serve "$work/spec.toml" --images "$work/images" >/dev/null 2>"$work/bootfleet.log" &
  local p=$!
  sleep 1.5
  storm "$1" /assets
  kill "$p"; wait "$p" 2>/dev/null || true
}

with_dnsmasq_nginx() { # $1 N
  rm -f "$work/dnsmasq.leases"
  ip netns exec "$srv" dnsmasq --no-daemon --port=0 --interface=br0 --bind-interfaces --no-ping \
    --dhcp-range=10.97.0.220,10.97.0.250,1h --dhcp-hostsfile="$work/dnsmasq.hosts" --dhcp-boot=undionly.kpxe \
    --enable-tftp --tftp-root="$work/images" --tftp-max=1000 --dhcp-leasefile="$work/dnsmasq.leases" \
    --log-facility=/dev/null --quiet-dhcp 2>/dev/null &
  local d=$!
  mkdir -p "$work/nginx-tmp"
  ip netns exec "$srv" nginx -c "$work/nginx.conf" -g 'daemon off;' &
  local h=$!
  sleep 1.5
  storm "$1" ""
  kill "$d" "$h"; wait "$d" "$h" 2>/dev/null || true
}

printf '%-5s %-15s %9s %7s %7s %8s   %s\n' N server makespan p50 p95 failures "median dhcp/tftp/http"
for n in "${sizes[@]}"; do
  read -r bm b50 b95 bf bd bt bh <<< "$(with_bootfleet "$n")"
  printf '%-5s %-15s %8ss %6ss %6ss %8s   %s/%s/%s s\n' "$n" bootfleet "$bm" "$b50" "$b95" "$bf" "$bd" "$bt" "$bh"
  read -r dm d50 d95 df dd dt dh <<< "$(with_dnsmasq_nginx "$n")"
  printf '%-5s %-15s %8ss %6ss %6ss %8s   %s/%s/%s s\n' "$n" "dnsmasq+nginx" "$dm" "$d50" "$d95" "$df" "$dd" "$dt" "$dh"
  awk -v a="$bm" -v b="$dm" -v n="$n" 'BEGIN{ if (a > 0 && b > 0) printf "%-5s makespan dnsmasq+nginx / bootfleet: %.2fx\n", n, b / a }'
done
