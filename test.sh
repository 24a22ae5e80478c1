#!/usr/bin/env bash
# The whole test suite on a Debian machine, fresh or not: installs what the
# tests need (dist/deps.sh build cluster test), starts libvirtd if nothing
# runs it, and runs `cargo test` with BOOTFLEET_TESTS_REQUIRE_ALL=1, so a
# test that cannot run (no root, a package missing) fails instead of
# skipping. Arguments go to `cargo test` (`./test.sh --no-run` only builds;
# `./test.sh dhcp` runs the tests whose names contain "dhcp"). Run as root
# (or it asks sudo); the tests start etcd and the rest themselves.
set -euo pipefail
cd "$(dirname "$0")"
[ "$(id -u)" = 0 ] || exec sudo -E env "PATH=$PATH" "$0" "$@"
dist/deps.sh build cluster test
dist/start-libvirtd.sh
export BOOTFLEET_TESTS_REQUIRE_ALL=1
exec cargo test --locked "$@"
