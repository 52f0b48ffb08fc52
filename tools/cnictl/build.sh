#!/usr/bin/env bash
# Build cnictl offline against Debian's libcni sources:
#   tools/cnictl/build.sh OUT          (e.g. tools/cnictl/build.sh target/cnictl)
# Needs Debian's golang-go and golang-github-appc-cni-dev (libcni 1.1.2 under /usr/share/gocode);
# .ci/run installs both. GOPATH mode: Debian installs Go libraries as a GOPATH tree, and the
# module mode would want libcni's own test dependencies (ginkgo, gomega) from the network.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
out="${1:?usage: build.sh OUT}"
gopath=/usr/share/gocode
if ! command -v go >/dev/null 2>&1; then
  echo "cnictl: no Go compiler (go): apt-get install golang-go" >&2
  exit 3
fi
if [ ! -d "$gopath/src/github.com/containernetworking/cni/libcni" ]; then
  echo "cnictl: no libcni sources in $gopath: apt-get install golang-github-appc-cni-dev" >&2
  exit 3
fi
mkdir -p "$(dirname "$out")"
out="$(cd "$(dirname "$out")" && pwd)/$(basename "$out")"
# The build cache lives next to the binary (not in $HOME); the binary is renamed into place so
# a concurrent reader never runs a half-written file.
cd "$here"
GOPATH="$gopath" GO111MODULE=off GOFLAGS= GOPROXY=off GOCACHE="${GOCACHE:-$(dirname "$out")/go-build-cache}" \
  CGO_ENABLED=0 go build -trimpath -o "$out.tmp.$$" .
mv -f "$out.tmp.$$" "$out"
