#!/usr/bin/env bash
# README command 1: starts five coordinators and three parties on loopback, generates a
# 2-of-3 ECDSA key across the parties, signs a digest with it and shows the signature
# verified (ecrecover gives the key's Ethereum address). Safe to run again: a running cluster
# is reused and a new key is generated. The parties are the final authority: the local
# cluster's admin (pki/admin-signing.key) enrolled them and signs the key's policy, which lets
# the local initiator (pki/initiator-signing.key) alone approve its signings; mpcctl signs
# both from admin.env.
#
# The first ECDSA key of a group of parties needs each party's first prime pair (about a
# minute of one core per party, generated in the background when a party starts) and then
# auxiliary info; later keys of the group take well under a second.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/install-deps.sh
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$HOME/.cache/mpc/target}
MPC_PROFILE=release scripts/local-cluster.sh up
# TLS, the admin's client certificate and the signing keys, as the operator's shell would
# have them.
CLUSTER_DIR=${MPC_LOCAL_CLUSTER_DIR:-.local-cluster}
# shellcheck source=/dev/null
source "$CLUSTER_DIR/admin.env"
CTL=("$CARGO_TARGET_DIR/release/mpcctl")
# mpcctl on the PATH for the commands the README shows after this one.
bin_dir=${CARGO_HOME:-$HOME/.cargo}/bin
mkdir -p "$bin_dir" && install -m 755 "${CTL[0]}" "$bin_dir/mpcctl"

echo
echo "== generate a 2-of-3 ECDSA key across party-1, party-2 and party-3 (the admin signs its policy: one initiator's approval per signing)"
key_id=$("${CTL[@]}" --output json keygen --scheme ecdsa-secp256k1 --threshold 2 --parties 3 \
  --description "demo key" --tag env=demo | python3 -c 'import json,sys; print(json.load(sys.stdin)["key_id"])')
"${CTL[@]}" key get "$key_id"

echo
echo "== sign a digest with it, approved by the initiator (two parties check the approval against the policy and run CGGMP21; the leader verifies before committing)"
digest=0x$(printf 'mpc demo %s' "$(date +%s%N)" | sha256sum | cut -d' ' -f1)
"${CTL[@]}" sign --key-id "$key_id" --digest "$digest"

echo
echo "== sign a message with its hash: served from a presignature once the pool (filled in the background) has one, else by the full protocol"
"${CTL[@]}" sign --key-id "$key_id" --message 0x$(printf 'hello mpc' | od -An -tx1 | tr -d ' \n') --hash keccak256

echo
echo "In this shell: source $CLUSTER_DIR/admin.env; mpcctl key list.  Stop with: scripts/local-cluster.sh down [--clean]"
