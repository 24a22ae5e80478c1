#!/usr/bin/env bash
# Starts libvirtd (and virtlogd, which writes the VMs' consoles) unless
# qemu:///system already answers: with systemd where it runs, by hand
# where it does not (containers, CI machines). Waits until it answers.
set -euo pipefail
answers() { virsh -c qemu:///system version >/dev/null 2>&1; }
# Where udev does not run, /dev/kvm stays root:root 0600 instead of udev's
# root:kvm 0660; libvirt then finds KVM usable when it probes QEMU and
# unusable when it checks its cache, and probes QEMU again (seconds) at
# every domain start (measured: 3 VMs took 150 s to start instead of 1 s).
# Set what udev would.
if [ -c /dev/kvm ] && getent group kvm >/dev/null && [ "$(stat -c %G /dev/kvm)" != kvm ]; then
  chgrp kvm /dev/kvm && chmod 0660 /dev/kvm
fi
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
