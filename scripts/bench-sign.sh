#!/usr/bin/env bash
# Signing speed, in one run: the protocols alone in one process (all parties, no network),
# then the same through a local cluster (five coordinators, three parties, loopback gRPC).
# 2-of-3 keys: ECDSA with and without a ready presignature, FROST Ed25519 and BIP-340;
# p50/p99, signatures per second one at a time and in a burst, the presignature refill
# rate, and key generation with and without existing auxiliary info. A signing through the
# cluster is timed as a client sees it: one CreateSigning call with `wait`, from the request
# to the answer carrying the signature; each batch also counts the Raft log entries it cost
# per signing (every coordinator's applied index before and after, presignature refill left
# out). Writes docs/benchmarks/sign.md (BENCH_REPORT=FILE writes elsewhere, e.g. for a
# shortened run: BENCH_ITERATIONS=5 BENCH_PRESIGNATURES=4 BENCH_IN_PROCESS=0 skips the
# in-process half and keeps the cluster half short).
# Prime pairs come from the test fixtures, so no run waits for prime generation (it happens
# in the parties' background pool in production). Keygens carry the admin's key policy and
# signings the initiator's approval, both signed before each is timed (admin.env of the
# local cluster names the key files).
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
scripts/install-deps.sh
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$HOME/.cache/mpc/target}
# The workspace's binaries, as the test command builds them: building a few crates alone
# unifies other features and compiles RocksDB's C++ again.
cargo build --release -q --workspace --bins --locked
BIN=$CARGO_TARGET_DIR/release
ITERATIONS=${BENCH_ITERATIONS:-100}
POOL=${BENCH_PRESIGNATURES:-32}
REPORT=${BENCH_REPORT:-docs/benchmarks/sign.md}
PRIMES=$ROOT/crates/tss/testdata/primes.jsonl
WORK=$(mktemp -d)
RAW=$WORK/results.jsonl
export MPC_LOCAL_CLUSTER_DIR=$WORK/cluster
cleanup() { MPC_PROFILE=release scripts/local-cluster.sh down --clean >/dev/null 2>&1 || true; rm -rf "$WORK"; }
trap cleanup EXIT

: >"$RAW"
if [[ ${BENCH_IN_PROCESS:-1} != 0 ]]; then
  echo "== in process"
  "$BIN/mpc-bench" sign-in-process --primes "$PRIMES" --iterations "$ITERATIONS" | tee "$RAW"
fi

echo "== through the cluster"
# One client principal drives the cluster: its per-principal call rate limit is off.
MPC_SESSIONS__PRESIGNATURES_PER_KEY=$POOL MPC_SESSIONS__PRESIGN_CONCURRENCY=2 MPC_LOG__FILTER=warn \
  MPC_LIMITS__REQUESTS_PER_SECOND=0 \
  MPC_LOCAL_PRIMES=$PRIMES MPC_PROFILE=release scripts/local-cluster.sh up >/dev/null
# TLS, the admin's certificate and the admin's and initiator's signing keys, for mpcctl and
# the load.
# shellcheck source=/dev/null
source "$MPC_LOCAL_CLUSTER_DIR/admin.env"
leader=$("$BIN/mpcctl" --endpoints 127.0.0.1:50051 --output json cluster status |
  python3 -c 'import json,sys; print(next(n["addr"] for n in json.load(sys.stdin)["nodes"] if n["is_leader"]))')
"$BIN/mpc-bench" sign-cluster --leader "$leader" --iterations "$ITERATIONS" --presign-pool "$POOL" | tee -a "$RAW"

mkdir -p "$(dirname "$REPORT")"
python3 scripts/bench_sign_report.py "$RAW" "$(nproc)" "scripts/bench-sign.sh (BENCH_ITERATIONS=$ITERATIONS BENCH_PRESIGNATURES=$POOL)" >"$REPORT"
echo "wrote $REPORT"
