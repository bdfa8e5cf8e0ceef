#!/usr/bin/env bash
# The whole test suite: formatting, lints, unit tests, openraft's storage conformance suite,
# the cross-process cluster tests (real coordinator processes, RocksDB, gRPC on loopback), and
# the docker tests (image, compose cluster, one round of every chaos scenario).
set -euo pipefail
cd "$(dirname "$0")/.."
# Each phase says when it starts, so a slow run shows where its time went.
step() { printf '\n== test.sh %dm%02ds: %s\n' $((SECONDS / 60)) $((SECONDS % 60)) "$*"; }
step "system packages and cargo tools"
scripts/install-deps.sh
# The local and compose clusters bind fixed ports inside the kernel's ephemeral range (gRPC
# 50051-50055, Raft 50061-50065): keep those out of it, so that no outgoing connection of
# another test holds one when a cluster binds it. Root only; a note when it cannot.
reserved=/proc/sys/net/ipv4/ip_local_reserved_ports
if ! grep -q "50051-50065" "$reserved" 2>/dev/null; then
  current=$(cat "$reserved" 2>/dev/null || true)
  echo "${current:+$current,}50051-50065" 2>/dev/null >"$reserved" ||
    echo "note: could not reserve ports 50051-50065 (not root?): a cluster may find one taken"
fi
# One target directory outside the clone: a fresh clone reuses the compiled RocksDB.
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$HOME/.cache/mpc/target}
step "formatting, lints, dependencies"
cargo fmt --all -- --check
# Crates with lints of their own still carry every workspace lint (Cargo.toml, [workspace.lints]).
scripts/check-lints.py
# The dependency tree against deny.toml: licenses, bans, sources; advisories where the RustSec
# database can be fetched (otherwise skipped, saying so: scripts/deny.sh).
scripts/deny.sh
# Everything in the release profile: the container image needs release binaries, and one
# profile means RocksDB's C++ is compiled once, not twice (a quarter of an hour on two cores).
step clippy
cargo clippy --workspace --all-targets --locked --release -- -D warnings
# The cross-process tests run the binaries: build them first.
step build
cargo build --workspace --bins --locked --release
# The DVN devnet's own tests (its EVM, its contracts' checks); this also fills the Python venv
# that the relayer's end-to-end tests start the devnet from.
step "the DVN devnet's own tests"
scripts/dvn-devnet.sh test -q
step "unit and cross-process tests"
cargo nextest run --workspace --locked --profile ci --cargo-profile release
# Every decoder of untrusted bytes, fuzzed briefly from the committed corpus (docs/fuzzing.md).
step fuzzing
scripts/fuzz.sh 10
# The DVN relayers under faults, on local processes: a relayer and the coordinator leader
# killed under a packet stream, every packet verified on the target exactly once.
step "DVN relayers under faults"
MPC_CHAOS_ROUNDS=1 chaos/dvn-kill.sh
# The image, the compose cluster and the chaos scenarios (skipped, saying why, without Docker).
step "image, compose cluster, chaos"
scripts/test-docker.sh
step "deployment files"
scripts/check-deploy.sh  # deploy/: Kubernetes manifests (schemas, vs compose), Prometheus rules and tests, the monitoring profile
step "all passed"
