#!/usr/bin/env bash
# Build nkgobench (the containers bench's work through netkit's Go package):
#   tools/nkgobench/build.sh OUT
# Builds libnetkit.a first (cargo build --release -p netkit-ffi; the Go package links
# target/release/libnetkit.a), then the program, offline (the package has no dependencies).
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
root="$(cd "$here/../.." && pwd)"
out="${1:?usage: build.sh OUT}"
command -v go >/dev/null 2>&1 || { echo "nkgobench: no Go compiler: apt-get install golang-go" >&2; exit 3; }
if [ -n "${CARGO_TARGET_DIR:-}" ] && [ "$(cd "$CARGO_TARGET_DIR" && pwd)" != "$root/target" ]; then
  echo "nkgobench: the Go package links $root/target/release/libnetkit.a; unset CARGO_TARGET_DIR" >&2
  exit 3
fi
(cd "$root" && cargo build --quiet --release -p netkit-ffi)
mkdir -p "$(dirname "$out")"
out="$(cd "$(dirname "$out")" && pwd)/$(basename "$out")"
cd "$here"
GOFLAGS=-mod=mod GOPROXY=off GO111MODULE=on GOTOOLCHAIN=local \
  GOCACHE="${GOCACHE:-$root/target/go/cache}" GOPATH="${GOPATH:-$root/target/go/path}" \
  go build -a -trimpath -o "$out.tmp.$$" .
mv -f "$out.tmp.$$" "$out"
