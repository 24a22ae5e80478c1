#!/usr/bin/env bash
# One command from a fresh Debian machine to a running cluster: installs
# what is missing (dist/deps.sh build cluster: libvirt, QEMU, OVMF, iPXE,
# and what bootfleet builds with), starts libvirtd if nothing runs it,
# builds bootfleet, builds the test OS, and brings up
# examples/quickstart.toml: three VMs that PXE-boot from bootfleet, showing
# each node's boot stage. Run as root (or it asks sudo). Tear down with the
# command it prints at the end.
set -euo pipefail
cd "$(dirname "$0")"
[ "$(id -u)" = 0 ] || exec sudo -E env "PATH=$PATH" "$0" "$@"
dist/deps.sh build cluster
dist/start-libvirtd.sh
cargo build --release --locked
bin=target/release/bootfleet
$bin images testos
$bin cluster up examples/quickstart.toml
echo
echo "status page: http://10.213.9.1:8080/   console: $bin cluster console examples/quickstart.toml node0"
echo "tear down:   $bin cluster down examples/quickstart.toml"
