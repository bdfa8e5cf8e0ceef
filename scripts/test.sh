#!/usr/bin/env bash
# The whole test suite: formatting, lints, unit tests, openraft's storage conformance suite,
# and the cross-process cluster tests (real coordinator processes, RocksDB, gRPC on loopback).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/install-deps.sh
# One target directory outside the clone: a fresh clone reuses the compiled RocksDB.
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$HOME/.cache/mpc/target}
cargo fmt --all -- --check
cargo clippy --workspace --all-targets --locked -- -D warnings
# The cross-process tests run the binaries: build them first.
cargo build --workspace --bins --locked
cargo nextest run --workspace --locked --profile ci
