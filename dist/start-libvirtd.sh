#!/usr/bin/env bash
# Starts libvirtd (and virtlogd, which writes the VMs' consoles) unless
# qemu:///system already answers: with systemd where it runs, by hand
# where it does not (containers, CI machines). Waits until it answers.
set -euo pipefail
answers() { virsh -c qemu:///system version >/dev/null 2>&1; }
answers && exit 0
if [ -d /run/systemd/system ]; then
  systemctl start virtlogd.socket libvirtd.socket libvirtd.service 2>/dev/null || true
fi
if ! answers; then
  mkdir -p /var/lib/libvirt/dnsmasq /var/log/libvirt
  pgrep -x virtlogd >/dev/null || virtlogd -d
  pgrep -x libvirtd >/dev/null || libvirtd -d
fi
for _ in $(seq 1 60); do
  answers && exit 0
  sleep 0.5
done
echo "libvirtd did not answer on qemu:///system within 30 s; see /var/log/libvirt/libvirtd.log" >&2
exit 1
