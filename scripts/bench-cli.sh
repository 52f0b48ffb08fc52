#!/usr/bin/env bash
# CLI benchmarks (issue 13 §5), netkit against iproute2 in the same run, as root:
#
#   1. the containers workload (N named namespaces, a veth each with the peer born inside, an
#      address on each end, lo and eth0 up, a default route) as batch files: `netkit -b` (one
#      file, each line with its own `-n`) against `ip -batch` (one batch of `netns add`, one for
#      the host side, one per container: an ip batch cannot switch namespace);
#   2. `netkit -j link show` against `ip -j link show` in a namespace with 1000 links
#      (hyperfine, 20 runs each).
#
# Knobs: NETKIT_BENCH_CLI_N=1000 (containers), NETKIT_BENCH_CLI_LINKS=1000, NETKIT_BENCH_REPS=3.
# Everything happens in namespaces this script makes (`nkc<pid>-…`), deleted on exit; the
# machine's own namespace is never touched. Prints a markdown table and the target checks.
set -euo pipefail
cd "$(dirname "$0")/.."
[ "$(id -u)" -eq 0 ] || { echo "bench-cli: run as root" >&2; exit 2; }
n="${NETKIT_BENCH_CLI_N:-1000}"
links="${NETKIT_BENCH_CLI_LINKS:-1000}"
reps="${NETKIT_BENCH_REPS:-3}"
p="nkc$$"
host="$p-host"
dir="$(mktemp -d)"

cleanup() {
  for ns in $(ip netns list | awk '{print $1}' | grep "^$p-" || true); do ip netns del "$ns" 2>/dev/null || true; done
  rm -rf "$dir"
}
trap cleanup EXIT INT TERM

echo "== building netkit (release)" >&2
cargo build --release -q -p netkit-cli
netkit="${CARGO_TARGET_DIR:-$PWD/target}/release/netkit"

ip netns add "$host"
ip -n "$host" link set lo up

# Container i: 10.200.x.y/30 pairs, as in netkit-core's containers bench.
addr() { local b=$((4 * $1 + $2)); echo "10.$((200 + b / 65536)).$(((b / 256) % 256)).$((b % 256))"; }

gen() { # $1 = method tag, writes the batch files
  local m="$1"
  local nk="$dir/$m.netkit" ns="$dir/$m.netns" hs="$dir/$m.host"
  : > "$nk"; : > "$ns"; : > "$hs"
  for ((i = 0; i < n; i++)); do
    local c="$p-$m-$i" h1 c2
    h1=$(addr "$i" 1); c2=$(addr "$i" 2)
    echo "netns add $c" >> "$nk"
    echo "-n $host link add vb$i type veth peer name eth0 netns $c" >> "$nk"
    echo "-n $host link set vb$i up" >> "$nk"
    echo "-n $host addr add $h1/30 dev vb$i" >> "$nk"
    echo "-n $c link set lo up" >> "$nk"
    echo "-n $c link set eth0 up" >> "$nk"
    echo "-n $c addr add $c2/30 dev eth0" >> "$nk"
    echo "-n $c route add default via $h1" >> "$nk"
    echo "netns add $c" >> "$ns"
    echo "link add vb$i type veth peer name eth0 netns $c" >> "$hs"
    echo "link set vb$i up" >> "$hs"
    echo "addr add $h1/30 dev vb$i" >> "$hs"
    printf 'link set lo up\nlink set eth0 up\naddr add %s/30 dev eth0\nroute add default via %s\n' "$c2" "$h1" > "$dir/$m.c$i"
  done
}

teardown() { # $1 = method tag
  local m="$1"
  for ((i = 0; i < n; i++)); do echo "link del vb$i"; done | ip -n "$host" -batch - >/dev/null
  for ((i = 0; i < n; i++)); do echo "netns del $p-$m-$i"; done | ip -batch - >/dev/null
}

check() { # $1 = method tag: every host end up, one container pings its gateway
  local m="$1"
  local up
  up=$(ip -n "$host" -o link show type veth | grep -c 'state UP' || true)
  [ "$up" -eq "$n" ] || { echo "bench-cli: $m: $up of $n host ends up" >&2; exit 1; }
  ip netns exec "$p-$m-$((n - 1))" ping -c1 -W2 -q "$(addr $((n - 1)) 1)" >/dev/null
}

now() { date +%s.%N; }
nk_times=(); ip_times=()
for ((r = 1; r <= reps; r++)); do
  gen nk; gen ip
  t0=$(now); "$netkit" -b "$dir/nk.netkit"; t1=$(now)
  check nk; teardown nk
  t2=$(now)
  ip -batch "$dir/ip.netns"
  ip -n "$host" -batch "$dir/ip.host"
  for ((i = 0; i < n; i++)); do ip -n "$p-ip-$i" -batch "$dir/ip.c$i"; done
  t3=$(now)
  check ip; teardown ip
  nk_times+=("$(echo "$t1 - $t0" | bc)"); ip_times+=("$(echo "$t3 - $t2" | bc)")
  echo "  rep $r: netkit -b ${nk_times[-1]} s, ip -batch ${ip_times[-1]} s" >&2
done
median() { printf '%s\n' "$@" | sort -g | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }
nk_med=$(median "${nk_times[@]}"); ip_med=$(median "${ip_times[@]}")

# 2. link show with many links.
ns="$p-links"
ip netns add "$ns"
for ((i = 0; i < links / 2; i++)); do echo "link add a$i type veth peer name b$i"; done | ip -n "$ns" -batch -
hyperfine -N -w 3 -r 20 --export-json "$dir/show.json" \
  "$netkit -n $ns -j link show" "ip -n $ns -j link show" >/dev/null 2>&1
read -r show_nk show_ip < <(python3 -c "
import json; r = json.load(open('$dir/show.json'))['results']
print(r[0]['median'] * 1000, r[1]['median'] * 1000)")

echo
echo "Machine: $(nproc) CPUs, kernel $(uname -r), $(ip -V); $(date -u +%F)"
echo
echo "| benchmark | netkit | iproute2 | netkit ÷ iproute2 |"
echo "|---|---:|---:|---:|"
printf '| containers N=%s as batch files (s, median of %s) | %.2f | %.2f | %.2f |\n' "$n" "$reps" "$nk_med" "$ip_med" "$(echo "$nk_med / $ip_med" | bc -l)"
printf '| `-j link show`, %s links (ms, median of 20) | %.2f | %.2f | %.2f |\n' "$links" "$show_nk" "$show_ip" "$(echo "$show_nk / $show_ip" | bc -l)"
echo
awk -v a="$nk_med" -v b="$ip_med" 'BEGIN { printf "- netkit -b ≤ 0.5× ip -batch: %s (%.2f)\n", (a <= 0.5 * b ? "met" : "MISSED"), a / b }'
awk -v a="$show_nk" -v b="$show_ip" 'BEGIN { printf "- netkit -j link show ≤ ip -j link show: %s (%.2f)\n", (a <= b ? "met" : "MISSED"), a / b }'
