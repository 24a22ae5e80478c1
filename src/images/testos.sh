#!/usr/bin/env bash
# Builds the test OS (`bootfleet images testos` runs this script): a small
# OS that proves a PXE path before Flatcar is fetched: Debian's kernel and a busybox
# initramfs whose /init brings up the NIC, takes an address by DHCP, and
# then either
# - with cloud-config-url= on the kernel command line: fetches it, prints it
#   to the serial console between markers and calls the phone-home URL in it;
# - with ignition.config.url=: runs Debian's Ignition (its fetch and files
#   stages, into /sysroot as Flatcar's initramfs does), prints what Ignition changed on disk between markers (the
#   lines of src/ignition/digest.rs) and calls the phone-home URL of the
#   unit Ignition wrote;
# and powers off. Packages are fetched with apt-get download and unpacked
# here, nothing is installed.
# Usage: testos.sh OUT_DIR   (writes OUT_DIR/vmlinuz, OUT_DIR/initrd.img)
set -euo pipefail
out=$(realpath -m "$1")
# Bumped whenever what the image holds changes, so older builds are redone.
recipe=2
built() { [ -s "$out/vmlinuz" ] && [ -s "$out/initrd.img" ] && [ "$(cat "$out/.recipe" 2>/dev/null)" = "$recipe" ]; }
built && exit 0
# Several builds may start at once (tests run in parallel): the first one
# builds while the others wait on the lock, then find the result.
mkdir -p "$out"
exec 9>"$out/.lock"
flock 9
built && exit 0
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
cd "$work"
kpkg=$(apt-cache depends linux-image-amd64 | awk '/Depends: linux-image-[0-9]/{print $2; exit}')
# Ignition and what it runs (useradd, usermod), with their libraries.
ign_pkgs="ignition passwd libc6 libblkid1 libaudit1 libselinux1 libsemanage2 libcap-ng0 libpcre2-8-0 libsepol2 libbz2-1.0"
# shellcheck disable=SC2086
apt-get download "$kpkg" busybox-static $ign_pkgs >/dev/null 2>&1 ||
  { echo "apt-get download $kpkg busybox-static $ign_pkgs failed" >&2; exit 1; }
dpkg -x "$kpkg"_*.deb k
dpkg -x busybox-static_*.deb b
for p in $ign_pkgs; do dpkg -x "$p"_*.deb x; done
kver=$(ls k/lib/modules)
mkdir -p root/bin root/sbin root/lib/modules root/lib64 root/proc root/sys root/dev root/etc root/tmp root/run root/home
cp b/bin/busybox root/bin/busybox
cp x/usr/lib/dracut/modules.d/30ignition/ignition root/bin/ignition
cp x/usr/sbin/useradd x/usr/sbin/usermod root/sbin/
for d in x/lib/x86_64-linux-gnu x/usr/lib/x86_64-linux-gnu; do
  [ -d "$d" ] && find "$d" -maxdepth 1 -name '*.so*' -exec cp -L {} root/lib/ \;
done
cp -L root/lib/ld-linux-x86-64.so.2 root/lib64/ld-linux-x86-64.so.2
# A root login for useradd to add to, the groups a spec's users may name.
printf 'root:x:0:0:root:/root:/bin/sh\n' > root/etc/passwd
printf 'root:*:19000:0:99999:7:::\n' > root/etc/shadow
printf 'root:x:0:\nwheel:x:10:\nusers:x:100:\nsudo:x:27:\ndocker:x:233:\nsystemd-journal:x:190:\n' > root/etc/group
# Debian's Ignition relabels for SELinux after the files stage; the test
# OS has no SELinux, so its setfiles does nothing (it reads the list).
mkdir -p root/etc/selinux
printf 'SELINUX=disabled\nSELINUXTYPE=targeted\n' > root/etc/selinux/config
printf '#!/bin/busybox sh\ncat >/dev/null\n' > root/sbin/setfiles
chmod +x root/sbin/setfiles
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
export PATH=/bin:/sbin
if grep -q 'ignition.config.url=' /proc/cmdline; then
  # Ignition writes into /sysroot, as in Flatcar's initramfs; it starts
  # as this OS's /etc (logins, groups, no SELinux).
  mkdir -p /sysroot/home /run/ignition
  cp -a /etc /sysroot/etc
  # Every regular file under /sysroot with its checksum, to see what
  # Ignition changed.
  snapshot() { find /sysroot -type f | LC_ALL=C sort | xargs sha256sum; }
  snapshot > /tmp/before
  cp /sysroot/etc/passwd /tmp/passwd.before
  ok=1
  for stage in fetch files; do
    echo "testos: ignition $stage"
    ignition --platform=metal --stage=$stage --root=/sysroot --log-to-stdout > /tmp/ignition.$stage 2>&1 || ok=0
    grep -v 'journal entry' /tmp/ignition.$stage | grep -E '^(CRITICAL|ERROR|WARNING)' | sed 's/^/ignition: /'
    [ $ok = 1 ] || { echo "testos: ignition $stage failed"; break; }
  done
  snapshot > /tmp/after
  r=/sysroot
  {
    grep -vxFf /tmp/before /tmp/after | while read -r sum path; do
      case ${path#$r} in
        /etc/passwd*|/etc/group*|/etc/shadow*|/etc/gshadow*|/etc/sub[ug]id*|/etc/.pwd.lock|/etc/.ignition-result.json) ;;
        /etc/systemd/system-preset/20-ignition.preset) sed -n 's/^enable /enabled /p' "$path" ;;
        *) echo "file ${path#$r} $(stat -c %a "$path") $sum" ;;
      esac
    done
    cut -d: -f1 $r/etc/passwd | while read -r user; do
      grep -q "^$user:" /tmp/passwd.before && continue
      echo "user $user"
      awk -F: -v u="$user" '{ n = split($4, m, ","); for (i = 1; i <= n; i++) if (m[i] == u) print "group " u " " $1 }' $r/etc/group
      hash=$(awk -F: -v u="$user" '$1 == u { print $2 }' $r/etc/shadow)
      case $hash in ''|'*'|'!'|'!*') ;; *) echo "password $user $(printf %s "$hash" | sha256sum | cut -d' ' -f1)" ;; esac
    done
  } | LC_ALL=C sort > /tmp/digest
  echo "=====BEGIN IGNITION DIGEST====="
  cat /tmp/digest
  echo "=====END IGNITION DIGEST====="
  unit=$r/etc/systemd/system/bootfleet-phone-home.service
  home=$(grep -o 'http://[^ ]*/phone-home/[^ ]*' "$unit" 2>/dev/null | head -1)
else
  url=$(tr ' ' '\n' < /proc/cmdline | sed -n 's/^cloud-config-url=//p')
  echo "testos: fetching $url"
  wget -q -O /tmp/cc "$url" || echo "testos: fetch failed"
  echo "=====BEGIN CLOUD-CONFIG====="
  cat /tmp/cc
  echo "=====END CLOUD-CONFIG====="
  home=$(grep -o 'http://[^ ]*/phone-home/[^ ]*' /tmp/cc | head -1)
fi
[ -n "$home" ] && wget -q -O /dev/null --post-data= "$home" && echo "testos: phoned home"
echo "testos: done"
poweroff -f
INIT
chmod +x root/init
cp "k/boot/vmlinuz-$kver" "$out/vmlinuz.tmp"
(cd root && find . | "$work/b/bin/busybox" cpio -o -H newc 2>/dev/null | gzip -1) > "$out/initrd.img.tmp"
mv "$out/vmlinuz.tmp" "$out/vmlinuz"
mv "$out/initrd.img.tmp" "$out/initrd.img"
echo "$recipe" > "$out/.recipe"
echo "test OS in $out (kernel $kver)"
