#!/usr/bin/env bash
# Two local EVM chains with LayerZero V2 contracts (Vyper), for the DVN relayer (crates/dvn).
#   scripts/dvn-devnet.sh up [deploy options]  start both chains, deploy, write addresses.json
#                                              (deploy options: --signers 0xA,0xB --quorum 2
#                                              --confirmations N; see devnet/deploy.py)
#   scripts/dvn-devnet.sh down                 stop both chains (their state lives in memory)
#   scripts/dvn-devnet.sh status               each chain's pid, URL and head block
#   scripts/dvn-devnet.sh ctl COMMAND ...      devnet/ctl.py: send packets, mine, snapshot/revert,
#                                              take an endpoint offline, set the DVN signers, ...
#   scripts/dvn-devnet.sh test [pytest args]   the devnet's own tests (each runs its own devnet)
# Source chain: chain id 1 (Ethereum), LayerZero eid 30101, http://127.0.0.1:8545. Target chain:
# chain id 1030, eid 30212, http://127.0.0.1:8546. Every transaction is mined at once.
# Environment: DVN_DEVNET_BLOCK_TIME (seconds between empty blocks, as a live chain makes them;
# default 0: blocks on transactions only), DVN_DEVNET_SOURCE_PORT, DVN_DEVNET_TARGET_PORT, DVN_DEVNET_DIR (default
# .dvn-devnet/: pid files, logs, addresses.json, submitter.key), MPC_VENV (the Python venv,
# default ~/.cache/mpc/venv; made and filled from devnet/requirements.txt when needed).
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
VENV=${MPC_VENV:-$HOME/.cache/mpc/venv}
PY=$VENV/bin/python
DIR=${DVN_DEVNET_DIR:-$ROOT/.dvn-devnet}
export DVN_DEVNET_DIR=$DIR
declare -A PORT=([source]=${DVN_DEVNET_SOURCE_PORT:-8545} [target]=${DVN_DEVNET_TARGET_PORT:-8546})
declare -A CHAIN_ID=([source]=1 [target]=1030)
CHAINS=(source target)

ensure_venv() {
  if [[ ! -x $PY ]]; then
    if ! python3 -m venv "$VENV" 2>/dev/null; then
      apt-get update -qq && apt-get install -y -qq python3-venv >/dev/null
      python3 -m venv "$VENV"
    fi
  fi
  # The requirements installed last are recorded in the venv: unchanged means nothing to do.
  local stamp=$VENV/.dvn-devnet-requirements
  if ! cmp -s devnet/requirements.txt "$stamp"; then
    "$PY" -m pip install -q --disable-pip-version-check -r devnet/requirements.txt
    cp devnet/requirements.txt "$stamp"
  fi
}

running_pid() { # chain -> its pid, if the process is alive (a zombie is not)
  local f=$DIR/$1.pid pid state
  [[ -f $f ]] || return 1
  pid=$(cat "$f")
  state=$(ps -o stat= -p "$pid" 2>/dev/null) || return 1
  [[ -n $state && $state != Z* ]] && echo "$pid"
}

url() { echo "http://127.0.0.1:${PORT[$1]}"; }

# The head block number if the chain at $1 answers with chain id $2, else failure.
probe() {
  "$PY" - "$1" "$2" <<'PY'
import json, sys, urllib.request
url, chain_id = sys.argv[1], int(sys.argv[2])
def call(method):
    body = json.dumps({"jsonrpc": "2.0", "id": 1, "method": method, "params": []}).encode()
    request = urllib.request.Request(url, body, {"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=2) as response:
        return int(json.load(response)["result"], 16)
try:
    if call("eth_chainId") != chain_id:
        sys.exit(f"{url} answers with another chain id")
    print(call("eth_blockNumber"))
except OSError:
    sys.exit(1)
PY
}

start() {
  local chain=$1
  "$PY" devnet/server.py --host 127.0.0.1 --port "${PORT[$chain]}" --chain-id "${CHAIN_ID[$chain]}" \
    --block-time "${DVN_DEVNET_BLOCK_TIME:-0}" >"$DIR/$chain.log" 2>&1 &
  echo $! >"$DIR/$chain.pid"
}

wait_ready() {
  local chain=$1 deadline=$((SECONDS + 60))
  until probe "$(url "$chain")" "${CHAIN_ID[$chain]}" >/dev/null 2>&1; do
    if ! running_pid "$chain" >/dev/null; then
      echo "the $chain chain exited; the end of $DIR/$chain.log:" >&2
      tail -n 5 "$DIR/$chain.log" >&2
      return 1
    fi
    if ((SECONDS >= deadline)); then
      echo "the $chain chain did not answer on $(url "$chain") within 60 s" >&2
      return 1
    fi
    sleep 0.2
  done
}

up() {
  ensure_venv
  mkdir -p "$DIR"
  echo '*' >"$DIR/.gitignore" # nothing made here belongs in git
  if running_pid source >/dev/null && running_pid target >/dev/null && [[ -f $DIR/addresses.json ]]; then
    echo "dvn devnet already up ($DIR/addresses.json)"
    return 0
  fi
  # Anything less than both chains and a deployment is started afresh: chain state is in memory.
  stop
  for chain in "${CHAINS[@]}"; do start "$chain"; done
  for chain in "${CHAINS[@]}"; do
    wait_ready "$chain" || { stop; exit 1; }
  done
  if ! "$PY" devnet/deploy.py --source-rpc "$(url source)" --target-rpc "$(url target)" "$@" >"$DIR/deploy.log" 2>&1; then
    echo "deploying failed; $DIR/deploy.log:" >&2
    cat "$DIR/deploy.log" >&2
    stop
    exit 1
  fi
  echo "dvn devnet up: source $(url source) (chain 1, eid 30101), target $(url target) (chain 1030, eid 30212)"
  echo "addresses: $DIR/addresses.json"
}

stop() {
  local chain pid
  for chain in "${CHAINS[@]}"; do
    if pid=$(running_pid "$chain"); then
      kill "$pid"
      for _ in $(seq 50); do running_pid "$chain" >/dev/null || break; sleep 0.1; done
      if running_pid "$chain" >/dev/null; then kill -9 "$pid"; fi
    fi
    rm -f "$DIR/$chain.pid"
  done
  # The deployment died with the chains.
  rm -f "$DIR/addresses.json"
}

down() {
  stop
  echo "dvn devnet down"
}

status() {
  local chain pid head up=0
  for chain in "${CHAINS[@]}"; do
    if pid=$(running_pid "$chain") && head=$(probe "$(url "$chain")" "${CHAIN_ID[$chain]}" 2>/dev/null); then
      echo "$chain: pid $pid, $(url "$chain"), chain id ${CHAIN_ID[$chain]}, head block $head"
      up=$((up + 1))
    elif [[ -n ${pid:-} ]]; then
      echo "$chain: pid $pid, not answering on $(url "$chain") (offline, or starting)"
    else
      echo "$chain: stopped"
    fi
  done
  ((up == ${#CHAINS[@]}))
}

case ${1:-} in
  up) shift; up "$@" ;;
  down) down ;;
  status) status ;;
  ctl) shift; ensure_venv; exec "$PY" devnet/ctl.py "$@" ;;
  # No pytest cache: it would land in the repository root.
  test) shift; ensure_venv; exec "$PY" -m pytest -q -p no:cacheprovider devnet/test_devnet.py "$@" ;;
  *) echo "usage: $0 up [deploy options]|down|status|ctl COMMAND ...|test [pytest args]" >&2; exit 2 ;;
esac
