# Sourced by the benchmark scripts: prints the machine (cores, load,
# kernel), the bootfleet commit, and the version of each peer named
# (`facts dnsmasq nginx ...`), so that a figure is read with what it was
# measured on.
facts() {
  echo "machine: $(nproc) cores, load $(cut -d' ' -f1-3 /proc/loadavg), kernel $(uname -r); bootfleet $(git rev-parse --short HEAD 2>/dev/null || echo '?')"
  local p v out=""
  for p in "$@"; do
    case $p in
      dnsmasq) v=$(dnsmasq --version 2>/dev/null | head -1 | cut -d' ' -f3) ;;
      nginx) v=$(nginx -v 2>&1 | sed 's/.*nginx\///') ;;
      qemu) v=$(qemu-system-x86_64 --version 2>/dev/null | head -1 | awk '{print $4}') ;;
      libvirtd) v=$(libvirtd --version 2>/dev/null | awk '{print $NF}') ;;
      python3) v=$(python3 --version 2>&1 | awk '{print $2}') ;;
      curl) v=$(curl --version | head -1 | awk '{print $2}') ;;
      *) v=$(dpkg-query -W -f='${Version}' "$p" 2>/dev/null || echo '?') ;;
    esac
    out="$out $p ${v:-?};"
  done
  [ -n "$out" ] && echo "peers:${out%;}"
  return 0
}
