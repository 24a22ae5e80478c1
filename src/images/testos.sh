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
# The systemd flavour adds a Debian root at /sysroot (systemd, curl and
# coreutils with what they depend on, unpacked, usr-merged): after
# Ignition wrote into it, /init hands over to its systemd, which runs the
# units Ignition enabled, as Flatcar boots from RAM.
# Usage: testos.sh OUT_DIR [busybox|systemd]
#   (writes OUT_DIR/vmlinuz, OUT_DIR/initrd.img)
set -euo pipefail
out=$(realpath -m "$1")
flavour=${2:-busybox}
case $flavour in busybox | systemd) ;; *) echo "usage: testos.sh OUT_DIR [busybox|systemd]" >&2; exit 2 ;; esac
# Bumped whenever what the image holds changes, so older builds are redone.
recipe=3
built() { [ -s "$out/vmlinuz" ] && [ -s "$out/initrd.img" ] && [ "$(cat "$out/.recipe" 2>/dev/null)" = "$recipe-$flavour" ]; }
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
  # Ignition writes into /sysroot, as in Flatcar's initramfs. In the
  # systemd flavour /sysroot is a Debian root with systemd; otherwise it
  # starts as this OS's /etc (logins, groups, no SELinux).
  r=/sysroot
  mkdir -p $r
  if [ -d /sysroot-image ]; then
    # switch_root needs the new root on a file system of its own.
    mount -t tmpfs -o mode=0755 sysroot $r
    cp -a /sysroot-image/. $r/
    rm -rf /sysroot-image
  else
    mkdir -p $r/home
    cp -a /etc $r/etc
  fi
  mkdir -p /run/ignition
  cp $r/etc/passwd /tmp/passwd.before
  touch /tmp/stamp
  sleep 1
  ok=1
  for stage in fetch files; do
    echo "testos: ignition $stage"
    ignition --platform=metal --stage=$stage --root=$r --log-to-stdout > /tmp/ignition.$stage 2>&1 || ok=0
    grep -v 'journal entry' /tmp/ignition.$stage | grep -E '^(CRITICAL|ERROR|WARNING)' | sed 's/^/ignition: /'
    [ $ok = 1 ] || { echo "testos: ignition $stage failed"; break; }
  done
  # What Ignition wrote: every regular file changed since the stamp, and
  # the logins it added (the lines of src/ignition/digest.rs).
  {
    find $r -type f -newer /tmp/stamp | while read -r path; do
      case ${path#$r} in
        /etc/passwd*|/etc/group*|/etc/shadow*|/etc/gshadow*|/etc/sub[ug]id*|/etc/.pwd.lock|/etc/.ignition-result.json) ;;
        /etc/systemd/system-preset/20-ignition.preset) sed -n 's/^enable /enabled /p' "$path" ;;
        *) echo "file ${path#$r} $(stat -c %a "$path") $(sha256sum "$path" | cut -d' ' -f1)" ;;
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
  if [ -x $r/lib/systemd/systemd ] && [ $ok = 1 ]; then
    # As Flatcar does from RAM: systemd takes over the root Ignition
    # wrote; on this first boot it applies Ignition's presets, and the
    # units it enabled (phone-home among them) run. The address DHCP gave
    # stays on eth0.
    echo "testos: switching to systemd"
    umount /proc /sys /dev 2>/dev/null
    exec switch_root $r /lib/systemd/systemd
  fi
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
if [ "$flavour" = systemd ]; then
  # Every package systemd, curl and coreutils need, unpacked into the root
  # systemd boots, then usr-merged as a Debian install would be.
  pkgs=$( (apt-cache depends --recurse --no-recommends --no-suggests --no-conflicts --no-breaks \
    --no-replaces --no-enhances systemd curl coreutils base-files 2>/dev/null | grep -v '^ \|^<'; echo) |
    grep -v '^$\|:' | sort -u)
  mkdir debs
  # shellcheck disable=SC2086
  (cd debs && apt-get download $pkgs >/dev/null 2>&1) ||
    { echo "apt-get download of systemd's packages failed: $pkgs" >&2; exit 1; }
  s=root/sysroot-image
  mkdir -p $s/usr
  for d in debs/*.deb; do dpkg -x "$d" $s; done
  for d in bin sbin lib lib64; do
    if [ -d "$s/$d" ] && [ ! -L "$s/$d" ]; then
      mkdir -p "$s/usr/$d"
      cp -a "$s/$d/." "$s/usr/$d/"
      rm -rf "${s:?}/$d"
    fi
    ln -sfn "usr/$d" "$s/$d"
  done
  rm -rf $s/usr/share/doc $s/usr/share/man $s/usr/share/locale $s/usr/share/info \
    $s/usr/lib/x86_64-linux-gnu/gconv
  mkdir -p $s/etc/selinux $s/home $s/root $s/proc $s/sys $s/dev $s/run $s/tmp $s/var/lib
  cp root/etc/passwd root/etc/shadow root/etc/group $s/etc/
  cp root/etc/selinux/config $s/etc/selinux/
  # No machine ID yet: systemd treats this boot as the first one and
  # applies the presets Ignition wrote, as on Flatcar.
  rm -f $s/etc/machine-id
  # As on Flatcar, no first-boot wizard waits on the console for answers,
  # and no login prompt (there is no agetty, and no udev to announce ttyS0).
  mkdir -p $s/etc/systemd/system
  for u in systemd-firstboot.service serial-getty@.service getty@.service; do
    ln -sfn /dev/null "$s/etc/systemd/system/$u"
  done
  printf 'include /etc/ld.so.conf.d/*.conf\n' > $s/etc/ld.so.conf
  ldconfig -r $s
fi
cp "k/boot/vmlinuz-$kver" "$out/vmlinuz.tmp"
(cd root && find . | "$work/b/bin/busybox" cpio -o -H newc 2>/dev/null | gzip -1) > "$out/initrd.img.tmp"
mv "$out/vmlinuz.tmp" "$out/vmlinuz"
mv "$out/initrd.img.tmp" "$out/initrd.img"
echo "$recipe-$flavour" > "$out/.recipe"
echo "test OS in $out (kernel $kver)"
