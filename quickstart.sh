#!/usr/bin/env bash
# One command from a fresh Debian machine to a running cluster: installs
# what is missing (libvirt, QEMU, OVMF, iPXE, and what bootfleet builds
# with), starts libvirtd if nothing runs it, builds bootfleet, builds the
# test OS, and brings up examples/quickstart.toml: three VMs that PXE-boot
# from bootfleet, showing each node's boot stage. Run as root (or it asks
# sudo). Tear down with the command it prints at the end.
set -euo pipefail
cd "$(dirname "$0")"
[ "$(id -u)" = 0 ] || exec sudo -E "$0" "$@"
export DEBIAN_FRONTEND=noninteractive
packages=(libvirt-daemon-system libvirt-clients libvirt-dev pkg-config qemu-system-x86 qemu-utils
  ipxe-qemu ovmf ipxe xz-utils zstd iptables)
missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "ok installed" || missing+=("$p")
done
# The test OS is made of Debian's packages (apt-get download): the package
# lists must be there even when nothing is missing.
if [ "${#missing[@]}" -gt 0 ] || ! apt-cache show busybox-static >/dev/null 2>&1; then
  apt-get update -qq
fi
if [ "${#missing[@]}" -gt 0 ]; then
  echo "installing: ${missing[*]}"
  apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi
dist/start-libvirtd.sh
cargo build --release --locked
bin=target/release/bootfleet
$bin images testos
$bin cluster up examples/quickstart.toml
echo
echo "status page: http://10.213.9.1:8080/   console: $bin cluster console examples/quickstart.toml node0"
echo "tear down:   $bin cluster down examples/quickstart.toml"
