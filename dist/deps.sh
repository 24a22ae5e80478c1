#!/usr/bin/env bash
# The one list of Debian packages bootfleet needs, by purpose, and the one
# place that installs them: quickstart.sh, test.sh, .ci/run and the
# benchmarks all come here, so a package added for one is there for all.
#
#   dist/deps.sh GROUP...          install what the groups need and is missing (root)
#   dist/deps.sh --list GROUP...   print the groups' packages, one a line
#   dist/deps.sh --check GROUP...  exit 1 naming every package not installed
#
# Groups:
#   build    what `cargo build` needs
#   cluster  what `bootfleet cluster up` (and so ./quickstart.sh) needs to
#            run VMs that PXE-boot the test OS or Flatcar
#   test     what the whole test suite needs besides build and cluster
#   bench    what bench/ needs besides the three above
#   ci       what .ci/run needs for itself (the fresh-machine check)
set -euo pipefail

# build: the `virt` crate links libvirt (found by pkg-config); the etcd
# client's build script runs protoc and includes its well-known types.
build=(pkg-config libvirt-dev protobuf-compiler libprotobuf-dev)

# cluster: libvirtd and virsh; QEMU with its iPXE ROMs, qemu-img for the
# qcow2 disks; OVMF for `firmware = "uefi"`; the iPXE and pxelinux loaders
# that `images stage` copies; xz and zstd unpack the test OS's kernel
# modules (it is made of Debian's packages, fetched with apt-get download);
# libvirt's network driver sets its rules with iptables; `bootfleet power`
# and `reprovision` reach IPMI BMCs through ipmitool.
cluster=(libvirt-daemon-system libvirt-clients qemu-system-x86 qemu-utils ipxe-qemu ovmf ipxe pxelinux
  syslinux-common xz-utils zstd iptables ipmitool)

# test: systemd-analyze checks every rendered unit; etcd-server, curl and
# iproute2 run the rendered etcd units as a real cluster in network
# namespaces and back the etcd store; atftp, tftp-hpa, busybox and curl
# fetch from the TFTP server; udhcpc (busybox), dhclient and dhcpcd ask the
# DHCP server, also through ISC's dhcrelay; python3 crafts a relayed
# request with option 82; dnsmasq is the DHCP server beside proxy mode;
# headless chromium checks the status page; GnuPG signs the release that
# `images fetch` verifies; GNU time is for bench/; util-linux's setpriv runs
# the DHCP server without CAP_NET_ADMIN; ndisc6's rdisc6 solicits router
# advertisements; kea-admin's perfdhcp and tcpdump load servers sharing one
# etcd and capture every ACK; prometheus' promtool lints /metrics and
# checks the alerting rules; Debian's ignition brings ignition-validate,
# which checks every rendered Ignition config (the test OS fetches its own
# copy of the ignition binary with apt-get download); etcd-client's
# etcdctl asks the etcd members that test-OS VMs run from rendered units;
# python3-venv, python3-dev, gcc and
# openssl make the BMC emulators' virtual environment (sushy-tools,
# virtualbmc and libvirt-python from PyPI, built against libvirt-dev) and
# their TLS certificates.
test=(systemd etcd-server curl iproute2 atftp tftp-hpa busybox isc-dhcp-client dhcpcd-base time python3
  dnsmasq-base chromium isc-dhcp-relay gnupg util-linux ndisc6 kea-admin tcpdump prometheus ignition
  etcd-client python3-venv python3-dev gcc openssl)

# bench: the servers bootfleet is compared with (Kea, nginx for the storm;
# tftpd-hpa and atftpd are unpacked by bench/tftp.sh itself, and need
# libwrap0).
bench=(kea-dhcp4-server nginx-light libwrap0)

# ci: debootstrap makes the fresh machine that .ci/run proves the README's
# commands on.
ci=(debootstrap)

usage() {
  sed -n '5,9p' "$0" | sed 's/^# \{0,1\}//' >&2
  exit 2
}

mode=install
case "${1:-}" in
  --list) mode=list; shift ;;
  --check) mode=check; shift ;;
  -h | --help | "") usage ;;
esac
[ $# -gt 0 ] || usage

packages=()
for group in "$@"; do
  case "$group" in
    build) packages+=("${build[@]}") ;;
    cluster) packages+=("${cluster[@]}") ;;
    test) packages+=("${test[@]}") ;;
    bench) packages+=("${bench[@]}") ;;
    ci) packages+=("${ci[@]}") ;;
    *) echo "deps.sh: unknown group '$group' (build, cluster, test, bench, ci)" >&2; exit 2 ;;
  esac
done

installed() { dpkg-query -W -f='${Status}' "$1" 2>/dev/null | grep -q "ok installed"; }
missing() {
  local p
  for p in "${packages[@]}"; do installed "$p" || echo "$p"; done
}

case "$mode" in
  list) printf '%s\n' "${packages[@]}"; exit 0 ;;
  check)
    m=$(missing)
    [ -z "$m" ] && exit 0
    echo "missing Debian packages: $(echo $m)" >&2
    echo "  help: dist/deps.sh $* (as root) installs them" >&2
    exit 1
    ;;
esac

[ "$(id -u)" = 0 ] || { echo "deps.sh: installing packages needs root (sudo $0 $*)" >&2; exit 1; }
export DEBIAN_FRONTEND=noninteractive

# The test OS is made of Debian's packages (apt-get download), so the
# package lists must be there even when nothing is missing.
lists_present() { apt-cache show busybox-static >/dev/null 2>&1; }
mapfile -t todo < <(missing)

# QEMU's packages must come from one release: a machine may arrive with a
# newer qemu-utils (a backport) than its archive's qemu-system-x86, which
# then refuses to install beside it. When qemu-system-x86 is to be
# installed, qemu-utils is pinned to the archive's qemu-system-common
# version (a downgrade if need be).
needs_qemu_pin=0
for p in "${todo[@]}"; do [ "$p" = qemu-system-x86 ] && needs_qemu_pin=1; done

if [ "${#todo[@]}" -eq 0 ]; then
  lists_present || apt-get update -qq
  exit 0
fi

echo "installing: ${todo[*]}" >&2
for attempt in 1 2 3; do
  if apt-get update -qq; then
    args=("${todo[@]}")
    if [ "$needs_qemu_pin" = 1 ]; then
      version=$(apt-cache policy qemu-system-common | awk '/Candidate:/ { print $2 }')
      filtered=()
      for p in "${args[@]}"; do [ "$p" = qemu-utils ] || filtered+=("$p"); done
      args=("${filtered[@]}" "qemu-utils=$version")
    fi
    if apt-get install -y -qq --no-install-recommends --allow-downgrades "${args[@]}" >/dev/null; then
      break
    fi
  fi
  if [ "$attempt" = 3 ]; then
    echo "deps.sh: apt-get failed three times installing: ${todo[*]}" >&2
    exit 1
  fi
  sleep 10
done

# Whatever apt-get said, every package must now be there: name the ones
# that are not.
m=$(missing)
if [ -n "$m" ]; then
  echo "deps.sh: still missing after apt-get: $(echo $m)" >&2
  exit 1
fi
