#!/usr/bin/env bash
# The whole test suite: formatting, lints, then every test (as root: the
# tests create their own network namespaces and never touch the host's).
set -euo pipefail
cd "$(dirname "$0")/.."
cargo fmt --all --check
cargo clippy --workspace --all-targets -- -D warnings
cargo test --workspace --all-targets
cargo test --workspace --doc
