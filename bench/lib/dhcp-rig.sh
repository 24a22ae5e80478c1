# Shared by bench/dhcp.sh and bench/avalanche.sh (sourced): two network
# namespaces joined by a veth pair, the server's (10.64.0.2, pinned to core
# 0) and the client's (perfdhcp, 10.64.0.3, pinned to core 1); the spec
# and Kea's configuration over one /10 pool; `start SERVER` with a fresh
# lease store and `stop_server`; etcd in the server's namespace (on the
# server's core) for bootfleet-etcd, listening on a veth 10.66.0.1 that a
# second server's namespace reaches too. bootfleet-etcd2 is two bootfleet
# processes sharing that etcd, the second in a namespace of its own
# (10.64.0.4) with its own client namespace (10.64.0.5): same core as the
# first (this is a measure of what sharing costs, not of scaling).
# Prints the machine and the peers' versions.
work=$(mktemp -d)
srv=bfb-srv-$$ cli=bfb-cli-$$ srv2=bfb-srv2-$$ cli2=bfb-cli2-$$
pid= pid2= etcd_pid=
stop_server() {
  for p in $pid $pid2; do kill "$p" 2>/dev/null || true; wait "$p" 2>/dev/null || true; done
  pid= pid2=
}
cleanup() {
  stop_server
  [ -n "$etcd_pid" ] && kill "$etcd_pid" 2>/dev/null
  for n in "$srv" "$cli" "$srv2" "$cli2"; do ip netns del "$n" 2>/dev/null || true; done
  rm -rf "$work"
}
trap cleanup EXIT

cargo build --release --quiet
pair() { # server ns, client ns, server address, client address
  ip netns add "$1"; ip netns add "$2"
  ip link add bfbs netns "$1" type veth peer name bfbc netns "$2"
  ip -n "$1" addr add "$3/10" dev bfbs; ip -n "$1" link set bfbs up; ip -n "$1" link set lo up
  ip -n "$2" addr add "$4/10" dev bfbc; ip -n "$2" link set bfbc up; ip -n "$2" link set lo up
}
pair "$srv" "$cli" 10.64.0.2 10.64.0.3
pair "$srv2" "$cli2" 10.64.0.4 10.64.0.5
ip link add bfbe netns "$srv" type veth peer name bfbe netns "$srv2"
ip -n "$srv" addr add 10.66.0.1/24 dev bfbe; ip -n "$srv" link set bfbe up
ip -n "$srv2" addr add 10.66.0.2/24 dev bfbe; ip -n "$srv2" link set bfbe up

spec() { # server address
  cat <<SPEC
[cluster]
name = "bench"
[network]
interface = "bfbs"
subnet = "10.64.0.0/10"
server = "$1"
gateway = "10.64.0.1"
dns = ["10.64.0.1"]
dynamic_range = ["10.65.0.0", "10.127.255.254"]
lease_time = "1h"
[boot]
kernel = "flatcar_production_pxe.vmlinuz"
initrd = "flatcar_production_pxe_image.cpio.gz"
SPEC
}
spec 10.64.0.2 > "$work/spec.toml"

cat > "$work/kea.json" <<KEA
{ "Dhcp4": {
  "interfaces-config": { "interfaces": [ "bfbs" ], "dhcp-socket-type": "udp" },
  "lease-database": { "type": "memfile", "persist": true, "name": "$work/kea/leases.csv", "lfc-interval": 0 },
  "valid-lifetime": 3600,
  "subnet4": [ { "id": 1, "subnet": "10.64.0.0/10",
    "pools": [ { "pool": "10.65.0.0 - 10.127.255.254" } ],
    "option-data": [ { "name": "routers", "data": "10.64.0.1" },
                     { "name": "domain-name-servers", "data": "10.64.0.1" } ] } ],
  "loggers": [ { "name": "kea-dhcp4", "severity": "ERROR", "output_options": [ { "output": "$work/kea/kea.log" } ] } ]
} }
KEA

etcd_spec() { # server address, key prefix
  spec "$1"
  printf '[state]\nbackend = "etcd"\nendpoints = ["http://10.66.0.1:2379"]\nprefix = "%s"\n' "$2"
}

start_etcd() {
  [ -n "$etcd_pid" ] && return 0
  ip netns exec "$srv" taskset -c 0 etcd --data-dir "$work/etcd" --listen-client-urls http://10.66.0.1:2379 \
    --advertise-client-urls http://10.66.0.1:2379 --listen-peer-urls http://127.0.0.1:2380 > "$work/etcd.log" 2>&1 &
  etcd_pid=$!
  for _ in $(seq 50); do ip netns exec "$srv" curl -sf http://10.66.0.1:2379/health > /dev/null && return 0; sleep 0.2; done
  echo "etcd did not start" >&2; exit 1
}

listening() { # namespace
  for _ in $(seq 50); do
    ip netns exec "$1" ss -Hlun 'sport = :67' | grep -q . && return 0
    sleep 0.1
  done
  return 1
}

start() { # server: starts it with an empty lease store, waits until it listens
  rm -rf "$work/state" "$work/state2" "$work/kea" "$work/dnsmasq.leases"; mkdir -p "$work/state" "$work/state2" "$work/kea"
  local bin=./target/release/bootfleet prefix="/bench/$RANDOM$RANDOM"
  case $1 in
    bootfleet) ip netns exec "$srv" taskset -c 0 $bin -q --state-dir "$work/state" dhcp "$work/spec.toml" > /dev/null & pid=$! ;;
    bootfleet-etcd|bootfleet-etcd2)
      start_etcd
      etcd_spec 10.64.0.2 "$prefix" > "$work/spec-etcd.toml"
      ip netns exec "$srv" taskset -c 0 $bin -q --state-dir "$work/state" dhcp "$work/spec-etcd.toml" > /dev/null & pid=$!
      if [ "$1" = bootfleet-etcd2 ]; then
        etcd_spec 10.64.0.4 "$prefix" > "$work/spec-etcd2.toml"
        ip netns exec "$srv2" taskset -c 0 $bin -q --state-dir "$work/state2" dhcp "$work/spec-etcd2.toml" > /dev/null & pid2=$!
        listening "$srv2" || { echo "$1 (second server) did not start" >&2; exit 1; }
      fi ;;
    kea) ip netns exec "$srv" taskset -c 0 env KEA_PIDFILE_DIR="$work/kea" KEA_LOCKFILE_DIR="$work/kea" kea-dhcp4 -c "$work/kea.json" > /dev/null 2>&1 & pid=$! ;;
    dnsmasq) ip netns exec "$srv" taskset -c 0 dnsmasq --no-daemon --port=0 --interface=bfbs --bind-interfaces \
        --no-ping --quiet-dhcp --dhcp-range=10.65.0.0,10.65.255.254,255.192.0.0,1h --dhcp-option=3,10.64.0.1 --dhcp-option=6,10.64.0.1 \
        --dhcp-leasefile="$work/dnsmasq.leases" --dhcp-lease-max=5000000 --dhcp-authoritative --log-facility=/dev/null > /dev/null 2>&1 & pid=$! ;;
  esac
  listening "$srv" || { echo "$1 did not start" >&2; exit 1; }
}

echo "machine: $(nproc) cores, load $(cut -d' ' -f1-3 /proc/loadavg), $(uname -r); bootfleet $(git rev-parse --short HEAD 2>/dev/null || echo '?')"
echo "peers: $(kea-dhcp4 -v 2>/dev/null | head -1 | sed 's/^/kea-dhcp4 /'); $(dnsmasq --version 2>/dev/null | head -1 | cut -d' ' -f1-3); $(etcd --version 2>/dev/null | head -1); perfdhcp $(perfdhcp -v 2>&1 | head -1)"
