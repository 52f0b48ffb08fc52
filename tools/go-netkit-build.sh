#!/usr/bin/env bash
# Build a Go program of tools/ that uses netkit's Go package (tools/nkgobench, tools/attachbench):
#   tools/go-netkit-build.sh DIR OUT
# Builds libnetkit.a first (cargo build --release -p netkit-ffi; the Go package links
# target/release/libnetkit.a), then the program in DIR, offline (the package has no
# dependencies; each program's go.mod points at netkit-ffi/go with a replace directive).
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
dir="$(cd "${1:?usage: go-netkit-build.sh DIR OUT}" && pwd)"
out="${2:?usage: go-netkit-build.sh DIR OUT}"
name="$(basename "$dir")"
command -v go >/dev/null 2>&1 || { echo "$name: no Go compiler: apt-get install golang-go" >&2; exit 3; }
if [ -n "${CARGO_TARGET_DIR:-}" ] && [ "$(cd "$CARGO_TARGET_DIR" && pwd)" != "$root/target" ]; then
  echo "$name: the Go package links $root/target/release/libnetkit.a; unset CARGO_TARGET_DIR" >&2
  exit 3
fi
(cd "$root" && cargo build --quiet --release -p netkit-ffi)
mkdir -p "$(dirname "$out")"
out="$(cd "$(dirname "$out")" && pwd)/$(basename "$out")"
cd "$dir"
# -a: Go's build cache does not track libnetkit.a, so a rebuilt library is linked for sure.
GOFLAGS=-mod=mod GOPROXY=off GO111MODULE=on GOTOOLCHAIN=local \
  GOCACHE="${GOCACHE:-$root/target/go/cache}" GOPATH="${GOPATH:-$root/target/go/path}" \
  go build -a -trimpath -o "$out.tmp.$$" .
mv -f "$out.tmp.$$" "$out"
