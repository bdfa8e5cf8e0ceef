#!/usr/bin/env bash
# scripts/dvn-demo.sh [N]: sends N packets (default 10) on the source chain of the local devnet
# and returns once the DVN relayers verified every one on the target chain (checked there: one
# PayloadVerified per packet), printing each packet's latency from its send and from its block
# reaching its confirmations. Starts what is not running first: the local cluster, the devnet
# and relayers dvn-1..3 (scripts/local-dvn.sh up). Exit 1 if a packet is not verified within
# two minutes or is verified twice.
set -euo pipefail
cd "$(dirname "$0")/.."
N=${1:-10}
if [[ ! $N =~ ^[1-9][0-9]*$ ]]; then
  echo "usage: $0 [N]: N, the packets to send, must be a positive whole number (got '$N')" >&2
  exit 2
fi
scripts/install-deps.sh
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$HOME/.cache/mpc/target}
export DVN_DEVNET_DIR=${MPC_LOCAL_CLUSTER_DIR:-$PWD/.local-cluster}/dvn/devnet
VENV=${MPC_VENV:-$HOME/.cache/mpc/venv}
MPC_PROFILE=release scripts/local-dvn.sh up
echo
echo "== $N packets from the source chain (eid 30101) to Conflux eSpace (eid 30212), verified by 2 of dvn-1 (HSM), dvn-2 (HSM), dvn-3 (platform key)"
"$VENV/bin/python" devnet/measure.py --count "$N" --timeout 120
echo
echo "The job book: source ${MPC_LOCAL_CLUSTER_DIR:-.local-cluster}/admin.env; mpcctl dvn status; mpcctl dvn jobs list --state verified.  Stop: scripts/local-dvn.sh down"
