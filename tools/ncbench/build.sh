#!/usr/bin/env bash
# Build ncbench (the containers bench's work from C through libnetkit):
#   tools/ncbench/build.sh OUT
# Builds libnetkit.a first (cargo build --release -p netkit-ffi, into $CARGO_TARGET_DIR or
# target/), then compiles main.c against it with gcc -O2.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
root="$(cd "$here/../.." && pwd)"
out="${1:?usage: build.sh OUT}"
target="${CARGO_TARGET_DIR:-$root/target}"
command -v gcc >/dev/null 2>&1 || { echo "ncbench: no gcc: apt-get install gcc" >&2; exit 3; }
(cd "$root" && cargo build --quiet --release -p netkit-ffi)
mkdir -p "$(dirname "$out")"
gcc -O2 -Wall -Wextra -Werror -o "$out.tmp.$$" "$here/main.c" -I"$root/netkit-ffi/include" \
  "$target/release/libnetkit.a" -lgcc_s -lutil -lrt -lpthread -lm -ldl -lc
mv -f "$out.tmp.$$" "$out"
