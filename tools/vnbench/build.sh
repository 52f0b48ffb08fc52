#!/usr/bin/env bash
# Build vnbench offline against Debian's vishvananda/netlink and netns sources:
#   tools/vnbench/build.sh OUT          (e.g. tools/vnbench/build.sh target/vnbench/vnbench)
# Needs golang-go, golang-github-vishvananda-netlink-dev and golang-github-vishvananda-netns-dev
# (.ci/run installs them). GOPATH mode, as Debian installs Go libraries as a GOPATH tree.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
out="${1:?usage: build.sh OUT}"
gopath=/usr/share/gocode
command -v go >/dev/null 2>&1 || { echo "vnbench: no Go compiler: apt-get install golang-go" >&2; exit 3; }
for p in netlink netns; do
  [ -d "$gopath/src/github.com/vishvananda/$p" ] ||
    { echo "vnbench: no vishvananda/$p in $gopath: apt-get install golang-github-vishvananda-$p-dev" >&2; exit 3; }
done
mkdir -p "$(dirname "$out")"
out="$(cd "$(dirname "$out")" && pwd)/$(basename "$out")"
cd "$here"
GOPATH="$gopath" GO111MODULE=off GOFLAGS= GOPROXY=off GOCACHE="${GOCACHE:-$(dirname "$out")/go-build-cache}" \
  CGO_ENABLED=0 go build -trimpath -o "$out.tmp.$$" .
mv -f "$out.tmp.$$" "$out"
