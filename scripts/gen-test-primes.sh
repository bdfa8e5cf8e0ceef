#!/usr/bin/env bash
# Regenerates crates/tss/testdata/primes.jsonl: safe-prime pairs that the tests use instead of
# generating their own (about a minute of one core per pair). They are public, so they are
# fit for tests only.
set -euo pipefail
cd "$(dirname "$0")/.."
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$HOME/.cache/mpc/target}
COUNT=${1:-5}
cargo run -q -p mpc-tss --example generate_primes -- crates/tss/testdata/primes.jsonl "$COUNT"
