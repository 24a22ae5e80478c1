#!/usr/bin/env bash
# Builds the test OS (`bootfleet images testos` runs this script): a small
# OS that proves a PXE path before Flatcar is fetched: Debian's kernel and a busybox
# initramfs whose /init brings up the NIC, takes an address by DHCP, reads
# cloud-config-url= from the kernel command line, fetches it, prints it to
# the serial console between markers, calls the phone-home URL found in it,
# and powers off. Packages are fetched with apt-get download and unpacked
# here, nothing is installed.
# Usage: testos.sh OUT_DIR   (writes OUT_DIR/vmlinuz, OUT_DIR/initrd.img)
set -euo pipefail
out=$(realpath -m "$1")
[ -s "$out/vmlinuz" ] && [ -s "$out/initrd.img" ] && exit 0
# Several builds may start at once (tests run in parallel): the first one
# builds while the others wait on the lock, then find the result.
mkdir -p "$out"
exec 9>"$out/.lock"
flock 9
[ -s "$out/vmlinuz" ] && [ -s "$out/initrd.img" ] && exit 0
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
cd "$work"
kpkg=$(apt-cache depends linux-image-amd64 | awk '/Depends: linux-image-[0-9]/{print $2; exit}')
apt-get download "$kpkg" busybox-static >/dev/null 2>&1
dpkg -x "$kpkg"_*.deb k
dpkg -x busybox-static_*.deb b
kver=$(ls k/lib/modules)
mkdir -p root/bin root/lib/modules root/proc root/sys root/dev root/etc root/tmp
cp b/bin/busybox root/bin/busybox
for m in virtio_ring virtio virtio_pci_modern_dev virtio_pci_legacy_dev virtio_pci failover net_failover virtio_net e1000; do
  f=$(find "k/lib/modules/$kver" -name "$m.ko*" | head -1)
  [ -n "$f" ] || continue
  case $f in
    *.xz) xz -dc "$f" > "root/lib/modules/$m.ko" ;;
    *.zst) zstd -qdc "$f" > "root/lib/modules/$m.ko" ;;
    *) cp "$f" "root/lib/modules/$m.ko" ;;
  esac
done
cat > root/init <<'INIT'
#!/bin/busybox sh
/bin/busybox --install -s /bin
export PATH=/bin
mount -t proc proc /proc
mount -t sysfs sys /sys
mount -t devtmpfs dev /dev
for m in virtio_ring virtio virtio_pci_modern_dev virtio_pci_legacy_dev virtio_pci failover net_failover virtio_net e1000; do
  [ -f /lib/modules/$m.ko ] && insmod /lib/modules/$m.ko 2>/dev/null
done
cat > /bin/dhcp-script <<'S'
#!/bin/sh
[ "$1" = bound ] || [ "$1" = renew ] || exit 0
ip addr add "$ip/${mask:-24}" dev "$interface"
[ -n "$router" ] && ip route add default via "$router"
exit 0
S
chmod +x /bin/dhcp-script
ip link set lo up
ip link set eth0 up
udhcpc -i eth0 -n -q -t 10 -s /bin/dhcp-script
url=$(tr ' ' '\n' < /proc/cmdline | sed -n 's/^cloud-config-url=//p')
echo "testos: fetching $url"
wget -q -O /tmp/cc "$url" || echo "testos: fetch failed"
echo "=====BEGIN CLOUD-CONFIG====="
cat /tmp/cc
echo "=====END CLOUD-CONFIG====="
home=$(grep -o 'http://[^ ]*/phone-home/[^ ]*' /tmp/cc | head -1)
[ -n "$home" ] && wget -q -O /dev/null --post-data= "$home" && echo "testos: phoned home"
echo "testos: done"
poweroff -f
INIT
chmod +x root/init
cp "k/boot/vmlinuz-$kver" "$out/vmlinuz.tmp"
(cd root && find . | "$work/b/bin/busybox" cpio -o -H newc 2>/dev/null | gzip -1) > "$out/initrd.img.tmp"
mv "$out/vmlinuz.tmp" "$out/vmlinuz"
mv "$out/initrd.img.tmp" "$out/initrd.img"
echo "test OS in $out (kernel $kver)"
