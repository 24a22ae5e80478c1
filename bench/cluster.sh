#!/usr/bin/env bash
# `bootfleet cluster` against a hand-made libvirt set-up of the same TCG
# domains, in one run, RUNS rounds alternating:
#   bootfleet: `cluster up` (network, pool, disks, server, domains, wait for
#   every phone-home), then `cluster down`; and `cluster run -- true`.
#   hand-made: virsh defines a network with libvirt's own dnsmasq (DHCP,
#   bootp file = an iPXE script over HTTP), a pool and disks, the same
#   domains, starts them, python3's http.server serves the rendered files;
#   "up" ends when every console shows the end of its cloud-config; then
#   destroy/undefine everything.
# N nodes (default 3) of the test OS; also a 10-node `cluster up` when
# TEN=1. Needs root, libvirtd (dist/start-libvirtd.sh) and python3.
# Usage: sudo bench/cluster.sh [RUNS] [N]
set -euo pipefail
cd "$(dirname "$0")/.."
dist/deps.sh build cluster test bench
runs=${1:-3}
n=${2:-3}
work=$(mktemp -d)
bin=$PWD/target/release/bootfleet
virsh() { command virsh -q -c qemu:///system "$@"; }
cleanup() {
  "$bin" -q --state-dir "$work/state" cluster down "$work/bf.toml" --images "$work/images" >/dev/null 2>&1 || true
  [ -f "$work/bf10.toml" ] && "$bin" -q --state-dir "$work/state" cluster down "$work/bf10.toml" --images "$work/images" >/dev/null 2>&1 || true
  hand_down >/dev/null 2>&1 || true
  rm -rf "$work"
}
trap cleanup EXIT
dist/start-libvirtd.sh
cargo build --release --quiet
. bench/lib/facts.sh
facts qemu libvirtd dnsmasq
"$bin" -q images testos --images "$work/images" >/dev/null

spec() { # NAME BRIDGE OCTET NODES
  printf '[cluster]\nname = "%s"\n[network]\ninterface = "%s"\nsubnet = "10.213.%s.0/24"\nserver = "10.213.%s.1"\n' "$1" "$2" "$3" "$3"
  printf '[boot]\ntestos = true\nconsole = ["ttyS0,115200n8"]\n'
  for i in $(seq 0 $(($4 - 1))); do
    printf '[[nodes]]\nname = "n%s"\nip = "10.213.%s.%s"\nroles = ["%s"]\n' "$i" "$3" $((10 + i)) "$([ "$i" = 0 ] && echo etcd || echo worker)"
  done
  printf '[libvirt]\naccel = "tcg"\n'
}
spec bfbench bfb-bench 40 "$n" > "$work/bf.toml"
spec handbench bfb-hand 41 "$n" > "$work/hand.toml"

# The hand-made side serves the same rendered files, named so that a
# static server finds them: boot.ipxe chains to ipxe/<mac>.ipxe.
"$bin" -q --state-dir "$work/hstate" render "$work/hand.toml" --out "$work/out" >/dev/null
mkdir -p "$work/www/assets" "$work/www/ipxe" "$work/www/cloud-config"
cp -r "$work/images/testos" "$work/www/assets/"
printf '#!ipxe\nchain http://10.213.41.1:8080/ipxe/${mac:hexhyp}.ipxe\n' > "$work/www/boot.ipxe"
for i in $(seq 0 $((n - 1))); do
  mac=$(grep -l "" "$work"/out/pxelinux.cfg/01-* | sed -n "$((i + 1))p" | sed 's|.*/01-||')
  node=$(grep -o 'cloud-config/n[0-9]*' "$work/out/pxelinux.cfg/01-$mac" | head -1 | cut -d/ -f2)
  cp "$work/out/ipxe/$node.ipxe" "$work/www/ipxe/$mac.ipxe"
  cp "$work/out/cloud-config/$node.yml" "$work/www/cloud-config/$node"
  echo "$node $mac" >> "$work/hand.nodes"
done

hand_up() {
  {
    echo "<network><name>handbench</name><bridge name='bfb-hand' stp='off'/><ip address='10.213.41.1' netmask='255.255.255.0'><dhcp><range start='10.213.41.100' end='10.213.41.150'/>"
    while read -r node mac; do echo "<host mac='${mac//-/:}' ip='10.213.41.$((10 + ${node#n}))'/>"; done < "$work/hand.nodes"
    echo "<bootp file='http://10.213.41.1:8080/boot.ipxe'/></dhcp></ip></network>"
  } > "$work/net.xml"
  virsh net-define "$work/net.xml" >/dev/null
  virsh net-start handbench >/dev/null
  virsh pool-define-as handbench dir --target /var/lib/libvirt/images/handbench >/dev/null
  virsh pool-build handbench >/dev/null
  virsh pool-start handbench >/dev/null
  python3 -m http.server 8080 --bind 10.213.41.1 --directory "$work/www" >/dev/null 2>&1 &
  echo $! > "$work/http.pid"
  while read -r node mac; do
    virsh vol-create-as handbench "$node.qcow2" 8G --format qcow2 >/dev/null
    rm -f "$work/hand-$node.log"
    cat > "$work/dom.xml" <<DOM
<domain type='qemu'><name>handbench-$node</name><memory unit='MiB'>512</memory><vcpu>1</vcpu>
<os><type arch='x86_64' machine='pc'>hvm</type><bios useserial='yes'/><boot dev='network'/><boot dev='hd'/></os>
<on_poweroff>destroy</on_poweroff><devices>
<disk type='volume' device='disk'><driver name='qemu' type='qcow2'/><source pool='handbench' volume='$node.qcow2'/><target dev='vda' bus='virtio'/></disk>
<interface type='network'><source network='handbench'/><mac address='${mac//-/:}'/><model type='virtio'/></interface>
<serial type='file'><source path='$work/hand-$node.log'/><target port='0'/></serial></devices></domain>
DOM
    virsh define "$work/dom.xml" >/dev/null
  done < "$work/hand.nodes"
  while read -r node _; do virsh start "handbench-$node" >/dev/null; done < "$work/hand.nodes"
  for _ in $(seq 3000); do
    local done=0
    while read -r node _; do grep -q "=====END CLOUD-CONFIG=====" "$work/hand-$node.log" 2>/dev/null && done=$((done + 1)); done < "$work/hand.nodes"
    [ "$done" = "$n" ] && return 0
    sleep 0.1
  done
  return 1
}

hand_down() {
  kill "$(cat "$work/http.pid" 2>/dev/null)" 2>/dev/null || true
  while read -r node _; do
    virsh destroy "handbench-$node" >/dev/null 2>&1 || true
    virsh undefine "handbench-$node" >/dev/null 2>&1 || true
    virsh vol-delete "$node.qcow2" --pool handbench >/dev/null 2>&1 || true
  done < "$work/hand.nodes"
  virsh pool-destroy handbench >/dev/null 2>&1 || true
  virsh pool-delete handbench >/dev/null 2>&1 || true
  virsh pool-undefine handbench >/dev/null 2>&1 || true
  virsh net-destroy handbench >/dev/null 2>&1 || true
  virsh net-undefine handbench >/dev/null 2>&1 || true
}

secs() { local s=$(date +%s.%N); "$@" >/dev/null 2>&1 || { echo FAIL; return; }; awk "BEGIN{printf \"%.1f\", $(date +%s.%N) - $s}"; }
bf() { "$bin" -q --state-dir "$work/state" cluster "$1" "$work/${2:-bf.toml}" --images "$work/images" "${@:3}"; }

ua=() da=() ra=() ub=() db=()
printf '%-4s %10s %10s %10s %12s %12s\n' run "bf up" "bf down" "bf run" "hand up" "hand down"
for i in $(seq "$runs"); do
  u=$(secs bf up); d=$(secs bf down); r=$(secs bf run bf.toml -- true)
  hu=$(secs hand_up); hd=$(secs hand_down)
  ua+=("$u"); da+=("$d"); ra+=("$r"); ub+=("$hu"); db+=("$hd")
  printf '%-4s %9ss %9ss %9ss %11ss %11ss\n' "$i" "$u" "$d" "$r" "$hu" "$hd"
done
stat() { printf '%s\n' "$@" | grep -v FAIL | sort -n | awk '{v[NR]=$1} END{if (NR==0) print "FAIL"; else printf "%s (%s-%s)", v[int((NR+1)/2)], v[1], v[NR]}'; }
echo "median (min-max) over $runs runs, $n nodes:"
echo "  bootfleet up   $(stat "${ua[@]}") s    hand-made up   $(stat "${ub[@]}") s"
echo "  bootfleet down $(stat "${da[@]}") s    hand-made down $(stat "${db[@]}") s"
echo "  bootfleet run -- true $(stat "${ra[@]}") s"
med() { printf '%s\n' "$@" | grep -v FAIL | sort -n | awk '{v[NR]=$1} END{print v[int((NR+1)/2)]}'; }
awk -v a="$(med "${ua[@]}")" -v b="$(med "${ub[@]}")" 'BEGIN{printf "  up: hand-made time / bootfleet time %.2fx\n", b / a}'
awk -v a="$(med "${da[@]}")" -v b="$(med "${db[@]}")" 'BEGIN{printf "  down: hand-made time / bootfleet time %.2fx\n", b / a}'
if [ "${TEN:-0}" = 1 ]; then
  spec bften bfb-ten 42 10 > "$work/bf10.toml"
  t=() ; td=()
  for i in $(seq "$runs"); do
    t+=("$(secs bf up bf10.toml)"); td+=("$(secs bf down bf10.toml)")
  done
  echo "  10 nodes: bootfleet up $(stat "${t[@]}") s, down $(stat "${td[@]}") s; 10-node up / 3-node up $(awk -v a="$(med "${t[@]}")" -v b="$(med "${ua[@]}")" 'BEGIN{printf "%.2fx", a / b}')"
fi
