#!/usr/bin/env bash
# Starts five coordinators on loopback and shows the platform's job as far as it goes today:
# a 2-of-3 ECDSA keygen session submitted through one node, replicated by Raft, and read back
# linearizably through another. (The parties that run the protocol and sign come next.)
# Safe to run again: a running cluster is reused.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/install-deps.sh
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$HOME/.cache/mpc/target}
MPC_PROFILE=release scripts/local-cluster.sh up
CTL=$CARGO_TARGET_DIR/release/mpcctl

echo
echo "== submit a 2-of-3 ECDSA keygen through node 1"
session=$("$CTL" --endpoints 127.0.0.1:50051 --output json keygen \
  --scheme ecdsa-secp256k1 --threshold 2 --parties 3 --description "demo key" --tag env=demo |
  sed -E 's/.*"session_id":"([^"]+)".*/\1/')
"$CTL" --endpoints 127.0.0.1:50051 session get "$session"

echo
echo "== read it back through node 5 (linearizable read)"
"$CTL" --endpoints 127.0.0.1:50055 --output json session get "$session"

echo
echo "== the session is in the replicated log of every coordinator"
"$CTL" cluster status
echo
echo "Stop with: scripts/local-cluster.sh down [--clean]"
