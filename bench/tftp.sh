#!/usr/bin/env bash
# TFTP throughput: bootfleet against tftpd-hpa, atftpd and dnsmasq, serving
# the same 64 MiB file over loopback in one run. Clients: curl at blksize
# 512/1468/8192/65464; atftp at windowsize 1/4/16/64 with blksize 1468 and
# 8192; and 100 curl clients at once (16 MiB each, blksize 1468). Prints
# MiB/s per server and setting as the median of RUNS rounds (each round
# fetches from every server in turn) with the spread (min-max), and
# bootfleet's ratio to the best peer's median. A transfer that fails, is
# corrupted or takes over 60 s is FAIL.
# Same conditions for every server: each runs only while it is measured
# (started, waited for until it listens, timed on the 64 MiB file, stopped),
# so no other server (and no yardstick) is running, idle or not, during a
# measurement. MODE=warm (the default) fetches the 64 MiB file once, untimed,
# with the same client and options before the timed fetch: the server's
# second transfer of the file is timed. MODE=cold times its first (a server
# that keeps files in memory pays for reading it then). The script prints
# the machine's cores, load and every peer's version first.
# Needs root (port 69 on 127.0.0.2-6); installs what it compares with through dist/deps.sh.
# (tftpd-hpa's and atftpd's binaries are unpacked from their
# packages into a temporary directory: installing the packages would start
# their daemons, and they conflict).
# With CEILING=1 a last column shows examples/tftp_ceiling.rs, a sender
# that spins on its socket with every datagram built in advance: the most
# any server could get through that client here. It is no peer (not in
# "ratio"); "of ceil" is bootfleet's share of it.
# Usage: sudo [CEILING=1] [MODE=warm|cold] bench/tftp.sh [RUNS]
set -euo pipefail
cd "$(dirname "$0")/.."
dist/deps.sh build cluster test bench
runs=${1:-3}
mode=${MODE:-warm}
case "$mode" in warm | cold) ;; *) echo "MODE is warm or cold" >&2; exit 2 ;; esac
work=$(mktemp -d)
pid=
stop_server() { if [ -n "$pid" ]; then kill "$pid" 2>/dev/null || true; wait "$pid" 2>/dev/null || true; pid=; fi; }
cleanup() { stop_server; rm -rf "$work"; }
trap cleanup EXIT

cargo build --release --quiet
[ "${CEILING:-0}" = 1 ] && cargo build --release --quiet --example tftp_ceiling
unpack() { # package, binary path inside it
  (cd "$work" && apt-get download "$1" >/dev/null 2>&1 && dpkg -x "$1"_*.deb "$1-pkg") || { echo "cannot fetch $1" >&2; exit 1; }
  echo "$work/$1-pkg$2"
}
atftpd_bin=$(unpack atftpd /usr/sbin/atftpd)
hpa_bin=$(unpack tftpd-hpa /usr/sbin/in.tftpd)
echo "machine: $(nproc) cores, load $(cut -d' ' -f1-3 /proc/loadavg), $(uname -r); mode $mode, $runs rounds"
echo "bootfleet $(git rev-parse --short HEAD 2>/dev/null || echo '?'); $("$hpa_bin" -V 2>&1 | head -1); $("$atftpd_bin" --version 2>&1 | head -1); $(dnsmasq --version | head -1 | cut -d' ' -f1-3)"
echo "clients: $(curl --version | head -1 | cut -d' ' -f1-2); $(dpkg-query -W -f='atftp ${Version}' atftp 2>/dev/null)"
mkdir -p "$work/root"
head -c $((64 << 20)) /dev/urandom > "$work/root/big.bin"
head -c $((16 << 20)) /dev/urandom > "$work/root/mid.bin"
chmod -R a+rX "$work"
want=$(sha256sum < "$work/root/big.bin" | cut -d' ' -f1)
want_mid=$(sha256sum < "$work/root/mid.bin" | cut -d' ' -f1)

declare -A addr=([bootfleet]=127.0.0.2 [tftpd-hpa]=127.0.0.3 [atftpd]=127.0.0.4 [dnsmasq]=127.0.0.5 [ceiling]=127.0.0.6)
servers=(bootfleet tftpd-hpa atftpd dnsmasq)
[ "${CEILING:-0}" = 1 ] && servers+=(ceiling)

start() { # server: starts it alone and waits until it listens
  case $1 in
    bootfleet) ./target/release/bootfleet -q tftp --root "$work/root" --listen 127.0.0.2:69 > /dev/null & pid=$! ;;
    tftpd-hpa) "$hpa_bin" -L -s "$work/root" -a 127.0.0.3:69 -B 65464 & pid=$! ;;
    atftpd) "$atftpd_bin" --daemon --no-fork --logfile /dev/null --bind-address 127.0.0.4 --port 69 "$work/root" & pid=$! ;;
    dnsmasq) dnsmasq --no-daemon --port=0 --enable-tftp --tftp-root="$work/root" --listen-address=127.0.0.5 --bind-interfaces --log-facility=/dev/null 2>/dev/null & pid=$! ;;
    ceiling) ./target/release/examples/tftp_ceiling 127.0.0.6:69 "$work/root/big.bin" 512 1468 8192 65464 > /dev/null & pid=$! ;;
  esac
  for _ in $(seq 100); do
    ss -Hlun "src ${addr[$1]}:69" | grep -q . && return 0
    sleep 0.05
  done
  echo "$1 did not start" >&2; exit 1
}

# One fetch: prints MiB/s, or FAIL.
fetch() { # server, file, size_mib, checksum, client command...
  local server=$1 file=$2 mib=$3 sum=$4; shift 4
  local out="$work/out.$server" start end
  rm -f "$out"
  start=$(date +%s.%N)
  # The clock stops when the client exits, before the checksum (hashing
  # 64 MiB takes longer than the fastest transfers).
  if "$@" "$out" >/dev/null 2>&1; then end=$(date +%s.%N); else end=; fi
  if [ -n "$end" ] && [ "$(sha256sum < "$out" | cut -d' ' -f1)" = "$sum" ]; then
    awk "BEGIN{printf \"%.1f\", $mib / ($end - $start)}"
  else
    echo FAIL
  fi
}

# Runs one setting: RUNS rounds, each fetching once from every server in
# turn (so drift over time hits every server alike), each server started
# for its fetch and stopped after it; sets vals to each server's median
# and spreads to its min-max (FAIL when any round failed).
setting() { # command builder name, then its arguments after the server
  local cmd=$1; shift
  local -A got=()
  local s v
  for _ in $(seq "$runs"); do
    for s in "${servers[@]}"; do
      start "$s"
      # warm: the timed file once first (the server's second transfer of
      # it is timed); cold: the server's first transfer of it.
      [ "$mode" = cold ] || "$cmd" "$s" "$@" > /dev/null
      v=$("$cmd" "$s" "$@")
      stop_server
      got[$s]="${got[$s]:-} $v"
    done
  done
  vals=(); spreads=()
  for s in "${servers[@]}"; do
    if [[ "${got[$s]}" == *FAIL* ]]; then vals+=(FAIL); spreads+=(-); continue; fi
    read -r med lo hi < <(tr ' ' '\n' <<< "${got[$s]}" | grep . | sort -g | awk '{v[NR]=$1} END{m = NR % 2 ? v[(NR+1)/2] : (v[NR/2] + v[NR/2+1]) / 2; printf "%.1f %s %s\n", m, v[1], v[NR]}')
    vals+=("$med"); spreads+=("$lo-$hi")
  done
}

curl_get() { local server=$1 blk=$2 file=$3 out=$4; curl --max-time 60 --silent --fail --tftp-blksize "$blk" -o "$out" "tftp://${addr[$server]}/$file"; }
atftp_get() { local server=$1 blk=$2 win=$3 file=$4 out=$5; timeout 60 atftp --option "blksize $blk" --option "windowsize $win" -g -r "$file" -l "$out" "${addr[$server]}" 69; }
many_get() { # 100 clients at once; prints aggregate MiB/s or FAIL
  local server=$1 start end ok=1 i
  local -a clients=()
  start=$(date +%s.%N)
  for i in $(seq 100); do
    timeout 120 curl --silent --fail --tftp-blksize 1468 -o "$work/many.$i" "tftp://${addr[$server]}/mid.bin" &
    clients+=($!)
  done
  for c in "${clients[@]}"; do wait "$c" || ok=0; done
  end=$(date +%s.%N)
  for i in $(seq 100); do [ "$(sha256sum < "$work/many.$i" | cut -d' ' -f1)" = "$want_mid" ] || ok=0; done
  rm -f "$work"/many.*
  if [ $ok = 1 ]; then awk "BEGIN{printf \"%.1f\", 1600 / ($end - $start)}"; else echo FAIL; fi
}

printf '%-28s' setting; for s in "${servers[@]}"; do printf '%20s' "$s"; done; printf '%10s' ratio
[ "${CEILING:-0}" = 1 ] && printf '%10s' "of ceil"; echo
row() { # label, then per server the medians (spreads in $spreads), then ratio to the best peer
  local label=$1; shift
  local -a vals=("$@")
  local i
  printf '%-28s' "$label"; for i in "${!vals[@]}"; do printf '%20s' "${vals[$i]} (${spreads[$i]:--})"; done
  local ours=${vals[0]} best=0 v
  for v in "${vals[@]:1:3}"; do [ "$v" != FAIL ] && awk "BEGIN{exit !($v > $best)}" && best=$v; done
  if [ "$ours" = FAIL ]; then printf '%10s' FAIL; elif [ "$best" = 0 ]; then printf '%10s' "peers fail"; else awk "BEGIN{printf \"%9.2fx\", $ours / $best}"; fi
  local ceil=${vals[4]:-}
  if [ -n "$ceil" ]; then
    if [ "$ours" = FAIL ] || [ "$ceil" = FAIL ] || [ "$ceil" = - ]; then printf '%10s' -; else awk "BEGIN{printf \"%9.2fx\", $ours / $ceil}"; fi
  fi
  echo
}

# WARM=1: the warm-up, on the 16 MiB file.
file_of() { if [ "${WARM:-0}" = 1 ]; then echo "mid.bin 16 $want_mid"; else echo "big.bin 64 $want"; fi; }
curl_fetch() { local f m w; read -r f m w < <(file_of); fetch "$1" "$f" "$m" "$w" curl_get "$1" "$2" "$f"; }
atftp_fetch() { local f m w; read -r f m w < <(file_of); fetch "$1" "$f" "$m" "$w" atftp_get "$1" "$2" "$3" "$f"; }
for blk in 512 1468 8192 65464; do
  setting curl_fetch "$blk"
  row "curl blksize $blk" "${vals[@]}"
done
for blk in 1468 8192; do
  for win in 1 4 16 64; do
    setting atftp_fetch "$blk" "$win"
    row "atftp blksize $blk win $win" "${vals[@]}"
  done
done
# The ceiling serves one client at a time: no figure for it here.
vals=(); spreads=()
for s in "${servers[@]}"; do
  if [ "$s" = ceiling ]; then vals+=(-); spreads+=(-); continue; fi
  start "$s"; WARM=1 curl_fetch "$s" 1468 > /dev/null; vals+=("$(many_get "$s")"); spreads+=(one); stop_server
done
row "100 x curl 16 MiB (aggregate)" "${vals[@]}"
