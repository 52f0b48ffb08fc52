#!/usr/bin/env bash
# CNI benchmark: ADD then DEL of N containers, each with ipMasq and one TCP port mapping (its own
# host port), through libcni (tools/cnictl), for three network stacks in the same run:
#
#   netkit     netkit-cni + netkit-ipam (this repository, release build)
#   netkit-wait  the same with "waitLinkFree": true (DEL waits for the kernel to free the veth
#              pair, as the reference plugin's DEL does)
#   netkit-inproc  netkit's configuration, but ADD and DEL in-process: netkit.Attach and
#              netkit.Detach from Go (tools/attachbench, netkit's Go package on libnetkit), no
#              libcni, no plugin process; timed as cnictl times the others
#   reference  bridge + host-local + portmap (Debian containernetworking-plugins, /usr/lib/cni)
#   netavark   podman's netavark (Debian package, /usr/lib/podman/netavark), driven with its own
#              CLI (setup/teardown, one process per container, as podman runs it)
#
# Run as root:   scripts/bench-cni.sh
# Knobs:         NETKIT_BENCH_CNI_N="10 100 1000"  (the default)
#                NETKIT_BENCH_CNI_QUICK=1          smoke run for CI: N=10 only, ~10 s
#                NETKIT_BENCH_CNI_KEEP=DIR         keep cnictl's JSON reports (result-<stack>-<N>.json)
#                NETKIT_BENCH_CNI_STACKS="netkit netkit-wait netkit-inproc reference netavark"
#                                                  (the default: all)
#                CARGO_TARGET_DIR                  where the release build goes (default ./target)
#
# Every run gets its own "host" namespace (the bridge, veth host ends, firewall rules and sysctls
# go there), its own state directories (libcni cache, IPAM, firewall state, netavark config) and
# its own container namespaces, which cnictl creates before the timed part and deletes after it;
# only the ADD (setup) and DEL (teardown) calls are timed. The machine's own network namespace is
# never touched: nothing runs in it but `ip netns add/del`. Everything is removed on exit, also
# on error or Ctrl-C. Prints a markdown table and the target checks; see BENCHMARKS.md.
set -euo pipefail
cd "$(dirname "$0")/.."

if [ "$(id -u)" -ne 0 ]; then
  echo "bench-cni: run as root (it creates network namespaces)" >&2
  exit 2
fi
if [ -n "${NETKIT_BENCH_CNI_QUICK:-}" ] && [ "${NETKIT_BENCH_CNI_QUICK}" != 0 ]; then
  ns_list="10"
else
  ns_list="${NETKIT_BENCH_CNI_N:-10 100 1000}"
fi
for n in $ns_list; do
  if ! [[ "$n" =~ ^[1-9][0-9]*$ ]] || [ "$n" -gt 30000 ]; then
    echo "bench-cni: N must be a number from 1 to 30000, not '$n'" >&2
    exit 2
  fi
done
for tool in ip jq awk cargo; do
  command -v "$tool" >/dev/null || { echo "bench-cni: $tool is missing" >&2; exit 3; }
done
REF_DIR=/usr/lib/cni
NETAVARK=/usr/lib/podman/netavark
for p in bridge host-local portmap; do
  [ -x "$REF_DIR/$p" ] || { echo "bench-cni: no $REF_DIR/$p: apt-get install containernetworking-plugins" >&2; exit 3; }
done
have_netavark=1
if [ ! -x "$NETAVARK" ]; then
  echo "bench-cni: no $NETAVARK (apt-get install netavark): netavark is left out" >&2
  have_netavark=0
fi

target="${CARGO_TARGET_DIR:-$PWD/target}"
echo "== building (release): netkit-cni, netkit-ipam, cnictl, attachbench" >&2
cargo build --release -q -p netkit-cni >&2
tools/cnictl/build.sh "$target/cnictl/cnictl" >&2
tools/attachbench/build.sh "$target/attachbench/attachbench" >&2

# ---- state, and the cleanup of everything this script makes -------------------------------------
prefix="nkbc$$-"                       # every namespace this run makes starts with this
work="$(mktemp -d "${TMPDIR:-/tmp}/netkit-bench-cni.XXXXXX")"
# State lives where a real node keeps it, not in $TMPDIR: IPAM data and libcni's cache under
# /var/lib (host-local's and netkit-ipam's defaults are /var/lib/cni/...), the firewall state and
# netavark's config under /run.
varlib="$(mktemp -d /var/lib/netkit-bench-cni.XXXXXX)"
runstate="$(mktemp -d /run/netkit-bench-cni.XXXXXX)"
# /run is a tmpfs on any systemd host (netkit's firewall state defaults to /run/netkit/firewall);
# where it is not (some sandboxes keep it on the root file system), mount one for the run.
runstate_mounted=""
if [ "$(stat -f -c %T /run)" != tmpfs ]; then
  mount -t tmpfs -o size=512m,mode=0755 netkit-bench-cni "$runstate"
  runstate_mounted=1
fi
child=""

cleanup() {
  local rc=$?
  trap - EXIT INT TERM
  if [ -n "$child" ] && kill -0 "$child" 2>/dev/null; then
    kill "$child" 2>/dev/null || true
    wait "$child" 2>/dev/null || true
  fi
  # Container namespaces (made by cnictl inside a host's mount namespace: here only their
  # files are left, if cnictl died) and host namespaces.
  local f
  for f in /run/netns/"$prefix"*; do
    [ -e "$f" ] || continue
    ip netns del "$(basename "$f")" 2>/dev/null || rm -f "$f"
  done
  [ -n "$runstate_mounted" ] && umount "$runstate"
  rm -rf "$work" "$varlib" "$runstate"
  exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

mkdir -p "$work/bin"
install -m 755 "$target/release/netkit-cni" "$target/release/netkit-ipam" "$work/bin/"
install -m 755 "$target/cnictl/cnictl" "$work/cnictl"
cnictl="$work/cnictl"
install -m 755 "$target/attachbench/attachbench" "$work/attachbench"

# The kernel frees deleted namespaces later (cleanup_net); wait until the count of live ones stops
# falling so that one run's leftovers do not slow the next run down.
live_netns() { awk '$1 == "net_namespace" { print $2 }' /proc/slabinfo 2>/dev/null; }
settle() {
  local prev cur stable=0 i
  # Dirty pages of the build or of the last run written out first: ext4 file creation waits
  # behind a busy journal (seen: 0.9 ms per file instead of 25 µs), which would tax whichever
  # stack runs next.
  sync
  prev="$(live_netns)"
  if [ -z "$prev" ]; then sleep 3; return; fi
  for ((i = 0; i < 600; i++)); do
    sleep 0.5
    cur="$(live_netns)"
    if [ "$cur" -ge "$prev" ]; then
      stable=$((stable + 1))
      [ "$stable" -ge 3 ] && return
    else
      stable=0
    fi
    prev="$cur"
  done
}

# ---- one run: ADD then DEL of N containers with one stack ------------------------------------------
port_base=20000
netavark_id=$(printf 'b%.0s' {1..64})

write_conf() { # stack dir data rt -> the file to give cnictl (dir: configs; data: /var/lib; rt: /run)
  local stack="$1" dir="$2" data="$3" rt="$4"
  case "$stack" in
    netkit | netkit-wait | netkit-inproc)
      jq -n --arg fw "$rt/firewall" --arg ipam "$data/ipam" --argjson wait "$([ "$stack" = netkit-wait ] && echo true || echo false)" '{
        cniVersion: "1.0.0", name: "bench",
        plugins: [{type: "netkit-cni", bridge: "nkbench0", isGateway: true, ipMasq: true,
                   capabilities: {portMappings: true}, firewallStateDir: $fw, waitLinkFree: $wait,
                   ipam: {type: "netkit-ipam", dataDir: $ipam, ranges: [[{subnet: "10.99.0.0/16"}]]}}]}' \
        > "$dir/net.conflist" ;;
    reference)
      jq -n --arg ipam "$data/ipam" '{
        cniVersion: "1.0.0", name: "bench",
        plugins: [{type: "bridge", bridge: "cnibench0", isGateway: true, ipMasq: true,
                   ipam: {type: "host-local", dataDir: $ipam, ranges: [[{subnet: "10.98.0.0/16"}]]}},
                  {type: "portmap", capabilities: {portMappings: true}}]}' \
        > "$dir/net.conflist" ;;
    netavark)
      # A network as podman defines it (network_info); masquerade is netavark's default for a
      # bridge network; DNS off (no aardvark-dns); podman's IPAM: cnictl gives static addresses.
      jq -n --arg id "$netavark_id" '{
        name: "bench", id: $id, driver: "bridge", network_interface: "nvbench0",
        subnets: [{subnet: "10.97.0.0/16", gateway: "10.97.0.1"}],
        ipv6_enabled: false, internal: false, dns_enabled: false,
        ipam_options: {driver: "host-local"}}' > "$dir/net.json" ;;
  esac
}

run_one() { # stack N -> $work/result-<stack>-<N>.json (or .failed)
  local stack="$1" n="$2"
  local tag
  case "$stack" in
    netkit) tag=nk ;; netkit-wait) tag=nw ;; netkit-inproc) tag=ni ;; reference) tag=rf ;; netavark) tag=nv ;;
  esac
  local dir="$work/$stack-$n" host="${prefix}h$tag$n" ctr="${prefix}$tag${n}c"
  local out="$work/result-$stack-$n.json"
  local data="$varlib/$stack-$n" rt="$runstate/$stack-$n"
  mkdir -p "$dir" "$data" "$rt"
  ip netns add "$host"
  ip -n "$host" link set lo up
  write_conf "$stack" "$dir" "$data" "$rt"
  local -a cmd
  case "$stack" in
    netkit | netkit-wait) cmd=("$cnictl" bench "$dir/net.conflist" "$n" "$ctr" --cni-path "$work/bin") ;;
    reference) cmd=("$cnictl" bench "$dir/net.conflist" "$n" "$ctr" --cni-path "$REF_DIR") ;;
    netavark) cmd=("$cnictl" netavark-bench "$dir/net.json" "$n" "$ctr" --netavark "$NETAVARK"
                   --netavark-config "$rt/netavark") ;;
    netkit-inproc) cmd=("$work/attachbench" "$dir/net.conflist" "$n" "$ctr") ;;
  esac
  # (In-process attachments keep no libcni cache.)
  [ "$stack" = netkit-inproc ] || cmd+=(--cache-dir "$data/cache")
  cmd+=(--port-base "$port_base")
  echo "== $stack N=$n" >&2
  local rc=0
  ip netns exec "$host" "${cmd[@]}" > "$dir/out" 2> "$dir/err" &
  child=$!
  wait "$child" || rc=$?
  child=""
  if [ "$rc" -eq 0 ] && jq -e '.add.total_s and .del.total_s' "$dir/out" >/dev/null 2>&1; then
    mv "$dir/out" "$out"
    # DEL must have removed every container's veth from the host.
    local left
    left=$(ip -n "$host" -o link show type veth | wc -l)
    if [ "$left" -ne 0 ]; then
      echo "bench-cni: $stack N=$n: $left veth(s) left in the host namespace after DEL" >&2
      touch "$work/failed"
    fi
    jq -r --arg s "$stack" '"   \($s) N=\(.n): ADD \(.add.total_s * 1000 | floor) ms, DEL \(.del.total_s * 1000 | floor) ms"' "$out" >&2
  else
    echo "bench-cni: $stack N=$n failed (exit $rc):" >&2
    tail -n 20 "$dir/err" >&2
    touch "$work/failed"
  fi
  ip netns del "$host"
  rm -rf "$dir" "$data" "$rt"
  settle
}

stacks="netkit netkit-wait netkit-inproc reference"
[ "$have_netavark" -eq 1 ] && stacks="$stacks netavark"
if [ -n "${NETKIT_BENCH_CNI_STACKS:-}" ]; then
  for s in $NETKIT_BENCH_CNI_STACKS; do
    case "$s" in
      netkit | netkit-wait | netkit-inproc | reference) ;;
      netavark) [ "$have_netavark" -eq 1 ] || { echo "bench-cni: netavark is not installed" >&2; exit 3; } ;;
      *) echo "bench-cni: unknown stack '$s' (netkit, netkit-wait, netkit-inproc, reference, netavark)" >&2; exit 2 ;;
    esac
  done
  stacks="$NETKIT_BENCH_CNI_STACKS"
fi
settle
for n in $ns_list; do
  for stack in $stacks; do
    run_one "$stack" "$n"
  done
done

# ---- report ----------------------------------------------------------------------------------------
field() { # stack N jq-path -> number, or empty
  local f="$work/result-$1-$2.json"
  [ -f "$f" ] && jq -r "$3" "$f" || true
}
fmt() { awk -v v="$1" -v d="$2" 'BEGIN { if (v == "") print "–"; else printf "%.*f", d, v }'; }
times() { if [ -n "$1" ]; then echo "$1×"; else echo "–"; fi; }
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { if (a == "" || b == "" || b == 0) print ""; else printf "%.2f", a / b }'; }

kernel="$(uname -r)"
refver="$(dpkg-query -W -f='${Version}' containernetworking-plugins 2>/dev/null || echo '?')"
navver="$([ "$have_netavark" -eq 1 ] && "$NETAVARK" --version | awk '{ print $2 }' || echo 'not installed')"
echo
echo "Machine: $(nproc) CPUs, kernel $kernel, load average $(cut -d' ' -f1-3 /proc/loadavg); $(date -u +%Y-%m-%d)."
echo "reference: containernetworking-plugins $refver; netavark $navver; libcni 1.1.2 (cnictl)."
echo
echo "| N | stack | ADD total (s) | ADD ms/container | ADD median ms | DEL total (s) | DEL ms/container | DEL median ms | ADD ÷ netkit | DEL ÷ netkit |"
echo "|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|"
for n in $ns_list; do
  nk_add="$(field netkit "$n" .add.total_s)"
  nk_del="$(field netkit "$n" .del.total_s)"
  for stack in $stacks; do
    add="$(field "$stack" "$n" .add.total_s)"
    del="$(field "$stack" "$n" .del.total_s)"
    add_ms="$(awk -v t="$add" -v n="$n" 'BEGIN { if (t != "") print t * 1000 / n }')"
    del_ms="$(awk -v t="$del" -v n="$n" 'BEGIN { if (t != "") print t * 1000 / n }')"
    add_med="$(field "$stack" "$n" '.add.median_s * 1000')"
    del_med="$(field "$stack" "$n" '.del.median_s * 1000')"
    if [ "$stack" = netkit ]; then
      ra="1.00"; rd="1.00"
      [ -z "$add" ] && ra="" && rd=""
    else
      ra="$(ratio "$add" "$nk_add")"; rd="$(ratio "$del" "$nk_del")"
    fi
    label="$stack"
    [ -z "$add" ] && label="$stack (FAILED)"
    echo "| $n | $label | $(fmt "$add" 2) | $(fmt "$add_ms" 1) | $(fmt "$add_med" 1) | $(fmt "$del" 2) | $(fmt "$del_ms" 1) | $(fmt "$del_med" 1) | $(times "$ra") | $(times "$rd") |"
  done
done

echo
echo "Targets:"
check() { # label value op limit detail
  local verdict
  if [ -z "$2" ]; then
    echo "- $1: not measured ($5)"
    return
  fi
  verdict="$(awk -v v="$2" -v l="$4" -v op="$3" 'BEGIN { ok = (op == ">=") ? v >= l : v <= l; print ok ? "met" : "MISSED" }')"
  echo "- $1: $2 (target $3 $4): **$verdict** — $5"
}
nk_add_1000="$(field netkit 1000 .add.total_s)"
nk_del_1000="$(field netkit 1000 .del.total_s)"
ref_add_1000="$(field reference 1000 .add.total_s)"
ref_del_1000="$(field reference 1000 .del.total_s)"
nk_add_10="$(field netkit 10 .add.total_s)"
if [ -n "$nk_add_1000" ] && [ -n "$ref_add_1000" ]; then
  check "ADD at N=1000, reference ÷ netkit" "$(ratio "$ref_add_1000" "$nk_add_1000")" ">=" 8 \
    "reference $(fmt "$ref_add_1000" 2) s, netkit $(fmt "$nk_add_1000" 2) s"
  check "DEL at N=1000, reference ÷ netkit" "$(ratio "$ref_del_1000" "$nk_del_1000")" ">=" 10 \
    "reference $(fmt "$ref_del_1000" 2) s, netkit $(fmt "$nk_del_1000" 2) s"
else
  check "ADD at N=1000, reference ÷ netkit" "" ">=" 8 "needs netkit and reference at N=1000"
  check "DEL at N=1000, reference ÷ netkit" "" ">=" 10 "needs netkit and reference at N=1000"
fi
if [ -n "$nk_add_1000" ] && [ -n "$nk_add_10" ]; then
  a1000="$(awk -v t="$nk_add_1000" 'BEGIN { print t * 1000 / 1000 }')"
  a10="$(awk -v t="$nk_add_10" 'BEGIN { print t * 1000 / 10 }')"
  m1000="$(field netkit 1000 '.add.median_s * 1000')"
  m10="$(field netkit 10 '.add.median_s * 1000')"
  check "netkit ADD per container, N=1000 ÷ N=10" "$(ratio "$a1000" "$a10")" "<=" 1.25 \
    "$(fmt "$a1000" 2) ms at N=1000, $(fmt "$a10" 2) ms at N=10 (medians $(fmt "$m1000" 2) and $(fmt "$m10" 2) ms: $(ratio "$m1000" "$m10")×)"
else
  check "netkit ADD per container, N=1000 ÷ N=10" "" "<=" 1.25 "needs N=10 and N=1000"
fi

# Issue 14: what a runtime saves by attaching in-process (no libcni, no plugin process).
for n in $ns_list; do
  ip_add="$(field netkit-inproc "$n" .add.total_s)"
  ip_del="$(field netkit-inproc "$n" .del.total_s)"
  nk_add="$(field netkit "$n" .add.total_s)"
  nk_del="$(field netkit "$n" .del.total_s)"
  if [ -n "$ip_add" ] && [ -n "$nk_add" ]; then
    echo "- N=$n in-process ADD: $(fmt "$(awk -v t="$ip_add" -v n="$n" 'BEGIN { print t * 1000 / n }')" 2) ms/container against $(fmt "$(awk -v t="$nk_add" -v n="$n" 'BEGIN { print t * 1000 / n }')" 2) through libcni: $(ratio "$nk_add" "$ip_add")× faster, $(fmt "$(awk -v a="$nk_add" -v b="$ip_add" -v n="$n" 'BEGIN { print (a - b) * 1000 / n }')" 2) ms saved per container; DEL $(fmt "$(awk -v t="$ip_del" -v n="$n" 'BEGIN { print t * 1000 / n }')" 2) against $(fmt "$(awk -v t="$nk_del" -v n="$n" 'BEGIN { print t * 1000 / n }')" 2) ms ($(ratio "$nk_del" "$ip_del")×)"
  fi
done

if [ -n "${NETKIT_BENCH_CNI_KEEP:-}" ]; then
  mkdir -p "$NETKIT_BENCH_CNI_KEEP"
  cp "$work"/result-*.json "$NETKIT_BENCH_CNI_KEEP"/ 2>/dev/null || true
fi
if [ -e "$work/failed" ]; then
  echo "bench-cni: some runs failed (see above)" >&2
  exit 1
fi
