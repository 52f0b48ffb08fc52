#!/usr/bin/env bash
# Build libnetkit in release mode and install it under PREFIX (default /usr/local):
#   PREFIX/lib/libnetkit.so, PREFIX/lib/libnetkit.a, PREFIX/include/netkit.h,
#   PREFIX/lib/pkgconfig/netkit.pc (from netkit.pc.in).
# Then: cc app.c $(pkg-config --cflags --libs netkit)            (shared)
#       cc app.c $(pkg-config --cflags --static --libs netkit) -static-libgcc   (static: see README)
set -euo pipefail
prefix="${1:-/usr/local}"
cd "$(dirname "$0")/.."
cargo build --release -p netkit-ffi
version=$(sed -n 's/^version = "\(.*\)"/\1/p' Cargo.toml | head -1)
install -d "$prefix/lib/pkgconfig" "$prefix/include"
install -m 0755 target/release/libnetkit.so "$prefix/lib/libnetkit.so"
install -m 0644 target/release/libnetkit.a "$prefix/lib/libnetkit.a"
install -m 0644 netkit-ffi/include/netkit.h "$prefix/include/netkit.h"
sed -e "s|@PREFIX@|$prefix|" -e "s|@VERSION@|$version|" netkit-ffi/netkit.pc.in > "$prefix/lib/pkgconfig/netkit.pc"
echo "installed libnetkit $version under $prefix"
