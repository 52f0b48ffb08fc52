#!/usr/bin/env bash
# Build nkgobench: tools/nkgobench/build.sh OUT (see tools/go-netkit-build.sh).
exec "$(dirname "$0")/../go-netkit-build.sh" "$(dirname "$0")" "$@"
