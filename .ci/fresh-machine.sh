#!/usr/bin/env bash
# Proves the README's two commands on a fresh machine: a minimal Debian
# bookworm chroot holding exactly the Debian packages a new machine of this
# kind ships (.ci/fresh-machine-packages.txt, less those from repositories
# this machine does not have), the host's Rust toolchain and cargo registry
# bind-mounted, and a clean `git archive HEAD` of the project. In it:
#   1. the README's tour, whose first command is ./quickstart.sh (installs,
#      builds, brings up three VMs) and whose last tears the cluster down;
#   2. the README's test command's install step and build (./test.sh --no-run).
# The chroot runs in its own PID and mount namespaces, so it starts its own
# libvirtd and sees none of the host's processes; everything it started
# dies with it. A missing package fails the run with the package's name
# (deps.sh --check, or the build's or the tour's own error, printed).
#
# The base chroot (debootstrap plus the machine's packages, ~5 min) is
# cached under $BOOTFLEET_CI_CACHE (default /var/cache/bootfleet-ci), keyed
# by the package list and this script's base recipe; each run writes into
# an overlay on top of it and throws the overlay away.
#
# Usage (root): .ci/fresh-machine.sh
set -euo pipefail
cd "$(dirname "$0")/.."
[ "$(id -u)" = 0 ] || { echo "fresh-machine.sh needs root" >&2; exit 1; }
export DEBIAN_FRONTEND=noninteractive

cache=${BOOTFLEET_CI_CACHE:-/var/cache/bootfleet-ci}
mirror=http://deb.debian.org/debian
# Bump when the recipe below changes, so that the cached base is rebuilt.
recipe=1
key=$( (echo "$recipe"; cat .ci/fresh-machine-packages.txt) | sha256sum | cut -c1-16)
base=$cache/bookworm-$key
started=$(date +%s)
say() { printf '[fresh-machine %4ds] %s\n' $(($(date +%s) - started)) "$*"; }

make_base() {
  local tmp=$base.tmp
  rm -rf "$tmp"
  mkdir -p "$cache"
  say "making the base chroot in $base (debootstrap --variant=minbase bookworm)"
  debootstrap --variant=minbase bookworm "$tmp" "$mirror" >"$cache/debootstrap.log" 2>&1 ||
    { tail -20 "$cache/debootstrap.log"; exit 1; }
  cat >"$tmp/etc/apt/sources.list" <<EOF
deb $mirror bookworm main
deb $mirror bookworm-updates main
deb http://deb.debian.org/debian-security bookworm-security main
EOF
  cp /etc/resolv.conf "$tmp/etc/resolv.conf"
  # Names with a version this machine's repositories cannot have (a
  # backport, another vendor's repository) are skipped, as are names the
  # archive does not carry.
  grep -v '^#' .ci/fresh-machine-packages.txt | awk '$2 !~ /bpo|nodesource/ { sub(/:amd64$/, "", $1); print $1 }' | sort -u >"$tmp/wanted"
  chroot "$tmp" /bin/sh -c 'apt-get update -qq && apt-cache pkgnames | sort -u >/carried' >/dev/null
  comm -12 "$tmp/wanted" "$tmp/carried" >"$tmp/ships"
  say "installing $(wc -l <"$tmp/ships") of the $(wc -l <"$tmp/wanted") packages a new machine ships"
  mount --bind /proc "$tmp/proc"
  if ! chroot "$tmp" /bin/sh -c 'DEBIAN_FRONTEND=noninteractive xargs apt-get install -y -qq --no-install-recommends </ships' \
    >"$cache/install.log" 2>&1; then
    umount "$tmp/proc"
    tail -30 "$cache/install.log"
    exit 1
  fi
  umount "$tmp/proc"
  chroot "$tmp" apt-get clean
  rm -f "$tmp/wanted" "$tmp/carried"
  mv "$tmp" "$base"
  # Older bases are of no further use.
  find "$cache" -mindepth 1 -maxdepth 1 -name 'bookworm-*' ! -path "$base" -exec rm -rf {} +
}

[ -d "$base" ] || make_base
say "base chroot: $base"

run=$(mktemp -d /var/tmp/bootfleet-fresh.XXXXXX)
cleanup() { rm -rf "$run"; }
trap cleanup EXIT
mkdir -p "$run/upper" "$run/work" "$run/root"
git archive --format=tar --prefix=bootfleet/ HEAD >"$run/project.tar"

# Everything below runs in new PID and mount namespaces: the mounts vanish
# with them and every process the chroot started is killed when its PID 1
# (this bash) exits.
status=0
unshare --pid --mount --fork --propagation private bash -euo pipefail -s "$base" "$run" <<'INNER' || status=$?
base=$1 run=$2
root=$run/root
mount -t overlay overlay -o "lowerdir=$base,upperdir=$run/upper,workdir=$run/work" "$root"
mount -t proc proc "$root/proc"
mount --rbind /sys "$root/sys"
mount --rbind /dev "$root/dev"
mount -t tmpfs tmpfs "$root/run"
mount -t tmpfs tmpfs "$root/tmp"
mkdir -p "$root/root/.rustup" "$root/root/.cargo"
mount --bind -o ro "${RUSTUP_HOME:-/root/.rustup}" "$root/root/.rustup"
mount --bind "${CARGO_HOME:-/root/.cargo}" "$root/root/.cargo"
cp /etc/resolv.conf "$root/etc/resolv.conf"
cp /etc/ssl/certs/ca-certificates.crt "$root/etc/ssl/certs/ca-certificates.crt"
tar -xf "$run/project.tar" -C "$root/root"
chroot "$root" /usr/bin/env -i HOME=/root TERM=dumb PATH=/root/.cargo/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \
  /bin/bash -euo pipefail -c 'cd /root/bootfleet && exec .ci/fresh-machine-steps.sh'
INNER
say "done (status $status)"
exit "$status"
