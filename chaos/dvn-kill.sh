#!/usr/bin/env bash
# The DVN relayers under faults: a stream of packets on the devnet's source chain while, each
# round, one relayer is killed (SIGKILL, in turn dvn-1, dvn-2, dvn-3) and then the coordinator
# leader, and both are started again. Every packet sent must end verified on the target exactly
# once (one PayloadVerified each). Runs on local processes (scripts/local-cluster.sh and
# scripts/local-dvn.sh: five coordinators, three parties, the devnet, dvn-1/2 on SoftHSM2,
# dvn-3 on a platform key) in a directory of its own, on the local cluster's usual ports: stop
# a running local cluster first. Ends with one line
#   dvn-kill: packets=N verified=N lost=0 double_submits=0
# and exits 1 if anything was lost or verified twice. MPC_CHAOS_ROUNDS rounds (default 3), a
# packet every 0.2 s for as long as the rounds take.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
ROUNDS=${MPC_CHAOS_ROUNDS:-3}
VENV=${MPC_VENV:-$HOME/.cache/mpc/venv}
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$HOME/.cache/mpc/target}
export MPC_PROFILE=release
WORK=$(mktemp -d)
export MPC_LOCAL_CLUSTER_DIR=$WORK/cluster
export MPC_LOCAL_PRIMES=$ROOT/crates/tss/testdata/primes.jsonl
export DVN_DEVNET_DIR=$MPC_LOCAL_CLUSTER_DIR/dvn/devnet
LOAD_PID=""
cleanup() {
  [[ -n $LOAD_PID ]] && kill "$LOAD_PID" 2>/dev/null || true
  scripts/local-cluster.sh down --clean >/dev/null 2>&1 || true
  rm -rf "$WORK"
}
trap cleanup EXIT
log() { echo "[$(date +%H:%M:%S)] $*"; }
# A step whose output matters only when it fails: then its last lines say why.
quietly() {
  if ! MPC_TRACE=1 "$@" >"$WORK/step.log" 2>&1; then
    echo "dvn-kill: '$*' failed:" >&2
    tail -n 30 "$WORK/step.log" >&2
    exit 1
  fi
}

quietly scripts/install-deps.sh
quietly scripts/local-dvn.sh up
log "cluster, devnet and relayers dvn-1..3 up"

leader() {
  (source "$MPC_LOCAL_CLUSTER_DIR/admin.env" && "$CARGO_TARGET_DIR/release/mpcctl" --timeout 10s --output json cluster status) |
    "$VENV/bin/python" -c 'import json,sys; print(json.load(sys.stdin)["leader"] or "")'
}

# Packets for as long as the rounds take (about 12 s a round), one every 0.2 s.
PACKETS=$((ROUNDS * 60 + 20))
"$VENV/bin/python" devnet/measure.py --count "$PACKETS" --interval 0.2 --timeout 300 \
  --json "$WORK/result.json" >"$WORK/load.log" 2>&1 &
LOAD_PID=$!
sleep 3
for round in $(seq 1 "$ROUNDS"); do
  relayer=dvn-$(( (round - 1) % 3 + 1 ))
  kill -9 "$(cat "$MPC_LOCAL_CLUSTER_DIR/dvn/$relayer.pid")"
  log "round $round: killed $relayer"
  sleep 2
  old=$(leader)
  [[ -n $old ]] || { echo "dvn-kill: no leader before round $round" >&2; exit 1; }
  kill -9 "$(cat "$MPC_LOCAL_CLUSTER_DIR/node$old.pid")"
  log "round $round: killed the leader, coordinator $old"
  sleep 4
  quietly scripts/local-cluster.sh up
  quietly scripts/local-dvn.sh up
  log "round $round: coordinator $old and $relayer back; leader now $(leader)"
  sleep 4
done
if ! wait "$LOAD_PID"; then
  tail -n 20 "$WORK/load.log" >&2
fi
LOAD_PID=""
"$VENV/bin/python" - "$WORK/result.json" <<'PY'
import json, sys
r = json.loads(open(sys.argv[1]).read().splitlines()[-1])
print("dvn-kill: packets=%d verified=%d lost=%d double_submits=%d" % (r["packets"], r["verified"], r["lost"], r["double_verified"]))
sys.exit(1 if r["lost"] or r["double_verified"] or r["verified"] != r["packets"] else 0)
PY
