#!/usr/bin/env bash
# The whole test suite: formatting, lints, then every test (as root: the
# tests create their own network namespaces and never touch the host's).
# Tests that cannot run on this kernel (a missing driver) report themselves
# by name; the list is printed at the end.
set -euo pipefail
cd "$(dirname "$0")/.."
export NETKIT_SKIP_LOG="$PWD/target/skipped-tests.txt"
mkdir -p target && : > "$NETKIT_SKIP_LOG"

cargo fmt --all --check
cargo clippy --workspace --all-targets -- -D warnings
cargo test --workspace --all-targets
cargo test --workspace --doc

if [ -s "$NETKIT_SKIP_LOG" ]; then
  echo "== skipped on this kernel ($(wc -l < "$NETKIT_SKIP_LOG")):"
  sort "$NETKIT_SKIP_LOG"
fi
