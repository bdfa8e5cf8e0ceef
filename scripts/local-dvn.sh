#!/usr/bin/env bash
# The DVN relayers beside the local cluster (scripts/local-cluster.sh), on the devnet's chains.
#   scripts/local-dvn.sh up       start the cluster if needed, the devnet (a block a second on
#                                 both chains) and relayers dvn-1..3; wait until all are ready
#   scripts/local-dvn.sh status   the devnet, each relayer's /ready, the job book
#   scripts/local-dvn.sh stop NAME stop one relayer (dvn-1..3); `up` starts it again
#   scripts/local-dvn.sh down     stop the relayers and the devnet (the job book stays in Raft)
# The reference deployment's mix: dvn-1 and dvn-2 sign on SoftHSM2 tokens of their own (made
# at first start, PINs in 0600 files), dvn-3 on the platform: a 2-of-3 ECDSA key `dvn-3` of
# the cluster, requested with a signer token scoped to that key and approved by the local
# initiator. The DVN contract needs two of the three. Relayer HTTP: 127.0.0.1:8101-8103
# (/health, /ready, /metrics); certificates with the `dvn` role from the cluster's PKI.
# Everything under .local-cluster/dvn/ (configs, tokens, logs; the devnet in devnet/).
set -euo pipefail
# MPC_TRACE=1 traces every command (chaos/dvn-kill.sh shows the trace of a failed step).
[[ -n ${MPC_TRACE:-} ]] && set -x
cd "$(dirname "$0")/.."
ROOT=$PWD
CLUSTER_DIR=${MPC_LOCAL_CLUSTER_DIR:-$ROOT/.local-cluster}
DIR=$CLUSTER_DIR/dvn
PKI=$CLUSTER_DIR/pki
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$HOME/.cache/mpc/target}
BIN=$CARGO_TARGET_DIR/${MPC_PROFILE:-release}
export DVN_DEVNET_DIR=$DIR/devnet
RELAYERS=(dvn-1 dvn-2 dvn-3)
QUORUM=2
SOFTHSM_MODULE=/usr/lib/softhsm/libsofthsm2.so
VENV=${MPC_VENV:-$HOME/.cache/mpc/venv}

http_port() { echo $((8100 + ${1#dvn-})); }
ctl() { scripts/dvn-devnet.sh ctl "$@"; }
mpcctl() { (source "$CLUSTER_DIR/admin.env" && "$BIN/mpcctl" --timeout 15s "$@"); }
field() { "$VENV/bin/python" -c 'import json,sys; v=json.load(open(sys.argv[1]))
for k in sys.argv[2:]: v=v[k]
print(v)' "$DVN_DEVNET_DIR/addresses.json" "$@"; }

running_pid() { # relayer -> pid if alive
  local f=$DIR/$1.pid pid state
  [[ -f $f ]] || return 1
  pid=$(cat "$f")
  state=$(ps -o stat= -p "$pid" 2>/dev/null) || return 1
  [[ -n $state && $state != Z* ]] && echo "$pid"
}

# A random secret in a file only its owner reads, made once.
secret_file() {
  [[ -s $1 ]] || (umask 077; head -c 24 /dev/urandom | od -An -tx1 | tr -d ' \n' >"$1")
}

devnet_up() {
  mkdir -p "$DVN_DEVNET_DIR"
  # Whether the chains run is told by their processes, not by a probe: a chain busy with a
  # burst of transactions may answer a probe late, and a live devnet must not be taken for
  # a dead one (as `dvn-devnet.sh status` would, under chaos/dvn-kill.sh's load).
  local started
  started=$(DVN_DEVNET_BLOCK_TIME=${DVN_DEVNET_BLOCK_TIME:-1} scripts/dvn-devnet.sh up)
  [[ $started == "dvn devnet already up"* ]] && return
  # A fresh devnet starts at block 0, but the job book in Raft may hold cursors from an
  # earlier one: grow the new source chain past them, so that its packets are above them.
  local highest head
  highest=$(mpcctl --output json dvn status | "$VENV/bin/python" -c '
import json, sys
print(max([c["block"] or 0 for c in json.load(sys.stdin)["cursors"]] + [0]))')
  head=$(ctl head --chain source | "$VENV/bin/python" -c 'import json,sys; print(json.load(sys.stdin)["block_number"])')
  if ((highest >= head)); then
    ctl mine $((highest - head + 1)) --chain source >/dev/null
  fi
}

# The [signer] section of relayer $1's config: its SoftHSM2 token and key, made once.
hsm_signer() {
  local name=$1 home=$DIR/$1
  mkdir -p "$home/tokens"
  printf 'directories.tokendir = %s\nobjectstore.backend = file\nlog.level = ERROR\n' "$home/tokens" >"$home/softhsm2.conf"
  secret_file "$home/pin"
  secret_file "$home/so-pin"
  SOFTHSM2_CONF=$home/softhsm2.conf "$BIN/mpc-dvn" hsm init --module "$SOFTHSM_MODULE" \
    --token-label "$name" --key-label dvn-signer --pin-file "$home/pin" --so-pin-file "$home/so-pin" >/dev/null
  cat <<TOML
[signer]
kind = "hsm"
module = "$SOFTHSM_MODULE"
token_label = "$name"
key_label = "dvn-signer"
pin_file = "$home/pin"
TOML
}

# The [signer] section of relayer $1's config: the cluster key named after it, and a signer
# token scoped to that key, made once.
platform_signer() {
  local name=$1 home=$DIR/$1
  mkdir -p "$home"
  if ! mpcctl key get "$name" >/dev/null 2>&1; then
    echo "generating the platform key $name (2 of party-1..3; the first ECDSA key waits for the parties' primes)" >&2
    mpcctl keygen --scheme ecdsa-secp256k1 --threshold 2 --parties 3 --key-id "$name" \
      --request-id "local-dvn-$name" --description "DVN signer $name" --tag role=dvn >/dev/null
  fi
  if [[ ! -s $home/signer.token ]]; then
    (umask 077; mpcctl --output json token create --name "$name" --role signer --keys "$name" |
      "$VENV/bin/python" -c 'import json,sys; print(json.load(sys.stdin)["token"])' >"$home/signer.token.new")
    mv "$home/signer.token.new" "$home/signer.token"
  fi
  cat <<TOML
[signer]
kind = "platform"
key_id = "$name"
token_file = "$home/signer.token"
initiator_key = "$PKI/initiator-signing.key"
TOML
}

write_config() {
  local name=$1 signer=$2 home=$DIR/$1
  [[ -f $PKI/dvn/$name.crt ]] || "$BIN/mpcctl" pki issue --dir "$PKI" --role dvn --name "$name" >/dev/null
  cat >"$home/dvn.toml" <<TOML
instance = "$name"
quorum = $QUORUM
signers = ${#RELAYERS[@]}

[cluster]
endpoints = [$(seq -s, -f '"https://127.0.0.1:%g"' 50051 50055)]
ca_cert = "$PKI/ca.crt"
client_cert = "$PKI/dvn/$name.crt"
client_key = "$PKI/dvn/$name.key"

[[sources]]
name = "ethereum"
chain_id = $(field source chain_id)
eid = $(field source eid)
rpc_urls = ["$(field source rpc_url)"]
confirmations = 1
endpoint = "$(field source endpoint)"
send_library = "$(field source send_library)"
dvn = "$(field source dvn)"

[target]
name = "conflux"
chain_id = $(field target chain_id)
eid = $(field target eid)
rpc_urls = ["$(field target rpc_url)"]
receive_library = "$(field target receive_library)"
dvn = "$(field target dvn)"
vid = $(field target vid)

$signer

[submitter.key]
kind = "key_file"
path = "$(field target submitter_key_file)"

[timing]
poll_interval_ms = 250

[http]
listen = "127.0.0.1:$(http_port "$name")"
TOML
}

relayer_env() { # relayer -> the environment its processes need
  [[ -f $DIR/$1/softhsm2.conf ]] && echo "SOFTHSM2_CONF=$DIR/$1/softhsm2.conf"
  true
}

up() {
  scripts/local-cluster.sh up >/dev/null
  (umask 077; mkdir -p "$DIR")
  devnet_up
  local name addresses=()
  for name in "${RELAYERS[@]}"; do
    mkdir -p "$DIR/$name"
    local signer
    if [[ $name == dvn-3 ]]; then signer=$(platform_signer "$name"); else signer=$(hsm_signer "$name"); fi
    write_config "$name" "$signer"
    addresses+=("$(env $(relayer_env "$name") "$BIN/mpc-dvn" address --config "$DIR/$name/dvn.toml")")
  done
  ctl set-signers --signers "$(IFS=,; echo "${addresses[*]}")" --quorum $QUORUM >/dev/null
  for name in "${RELAYERS[@]}"; do
    running_pid "$name" >/dev/null && continue
    env $(relayer_env "$name") nohup "$BIN/mpc-dvn" run --config "$DIR/$name/dvn.toml" >>"$DIR/$name.log" 2>&1 &
    echo $! >"$DIR/$name.pid"
  done
  local deadline=$((SECONDS + 60))
  for name in "${RELAYERS[@]}"; do
    until curl -sf "http://127.0.0.1:$(http_port "$name")/ready" >/dev/null 2>&1; do
      if ((SECONDS > deadline)) || ! running_pid "$name" >/dev/null; then
        echo "$name is not ready; its log: $DIR/$name.log" >&2
        tail -n 20 "$DIR/$name.log" >&2 || true
        exit 1
      fi
      sleep 0.2
    done
  done
  echo "devnet and ${#RELAYERS[@]} DVN relayers ready (quorum $QUORUM of ${#RELAYERS[@]}; data and logs in $DIR)"
  local i=0
  for name in "${RELAYERS[@]}"; do
    local kind=hsm; [[ $name == dvn-3 ]] && kind=platform
    printf '  %s  %-8s signer %s  http://127.0.0.1:%s\n' "$name" "$kind" "${addresses[$i]}" "$(http_port "$name")"
    i=$((i + 1))
  done
  echo "  source chain $(field source rpc_url) (eid $(field source eid)), target $(field target rpc_url) (eid $(field target eid))"
}

status() {
  scripts/dvn-devnet.sh status || true
  local name
  for name in "${RELAYERS[@]}"; do
    if curl -sf "http://127.0.0.1:$(http_port "$name")/ready" >/dev/null 2>&1; then
      echo "$name ready"
    else
      echo "$name not ready"
    fi
  done
  mpcctl dvn status
}

stop() {
  local name=$1 pid
  if pid=$(running_pid "$name"); then
    kill "$pid" 2>/dev/null || true
    for _ in $(seq 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    kill -9 "$pid" 2>/dev/null || true
  fi
  rm -f "$DIR/$name.pid"
}

down() {
  local name
  for name in "${RELAYERS[@]}"; do stop "$name"; done
  [[ -d $DVN_DEVNET_DIR ]] && scripts/dvn-devnet.sh down >/dev/null
  echo "DVN relayers and devnet stopped"
}

case ${1:-} in
  up) up ;;
  status) status ;;
  stop)
    if [[ ! " ${RELAYERS[*]} " == *" ${2:-} "* ]]; then
      echo "usage: $0 stop NAME: NAME is one of ${RELAYERS[*]} (got '${2:-}')" >&2
      exit 2
    fi
    stop "$2" ;;
  down) down ;;
  *) echo "usage: $0 up|status|stop NAME|down" >&2; exit 2 ;;
esac
