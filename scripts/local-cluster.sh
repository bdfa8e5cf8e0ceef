#!/usr/bin/env bash
# Five coordinators and three parties as local processes on loopback.
#   scripts/local-cluster.sh up            build if needed, start, wait until all are ready
#   scripts/local-cluster.sh status        every node's role, term and readiness
#   scripts/local-cluster.sh down [--clean] stop; --clean also deletes the data
# Coordinators: gRPC 127.0.0.1:50051-50055 (TLS), Raft 127.0.0.1:50061-50065 (mutual TLS),
# HTTP 127.0.0.1:8080-8084. Parties party-1..3: HTTP 127.0.0.1:8091-8093, each with its own
# master key in .local-cluster/party-N.key (made once). On first start the cluster's PKI is
# made under .local-cluster/pki/, with the admin's and an initiator's Ed25519 signing keys
# (pki/admin-signing.key, pki/initiator-signing.key: the parties trust the admin's public
# key, --admin-keys), and .local-cluster/admin.env is written: `source` it and mpcctl talks
# to the cluster as the admin and signs as both. Every `up` enrols the three parties' identities
# (`mpc-party identity`, `mpcctl party enroll`; again is harmless). Data and logs under
# .local-cluster/. MPC_LOCAL_PRIMES=FILE gives party N line N of FILE as its first prime pair
# (tests and benchmarks; such primes are public, never use them for keys that matter).
set -euo pipefail
# MPC_TRACE=1 traces every command (chaos/dvn-kill.sh shows the trace of a failed step).
[[ -n ${MPC_TRACE:-} ]] && set -x
cd "$(dirname "$0")/.."
ROOT=$PWD
DIR=${MPC_LOCAL_CLUSTER_DIR:-$ROOT/.local-cluster}
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$HOME/.cache/mpc/target}
PROFILE=${MPC_PROFILE:-release}
BIN=$CARGO_TARGET_DIR/$PROFILE
N=5
PARTIES=3
ENDPOINTS=$(seq -s, -f "127.0.0.1:%g" 50051 50055)
MEMBERS=""
for i in $(seq 1 $N); do
  MEMBERS+="${MEMBERS:+,}$i=127.0.0.1:$((50050 + i))=127.0.0.1:$((8079 + i))=127.0.0.1:$((50060 + i))"
done
PKI=$DIR/pki
ADMIN_SIGNING_KEY=$PKI/admin-signing.key
INITIATOR_SIGNING_KEY=$PKI/initiator-signing.key

build() {
  local flag=(); [[ $PROFILE == release ]] && flag=(--release)
  # The whole workspace's binaries, as the test command builds them: one feature set, so
  # neither build undoes the other's work. mpc-dvn is among them (scripts/local-dvn.sh).
  cargo build "${flag[@]}" -q --workspace --bins
}

running_pid() { # node or party-N -> pid if alive (a killed node nobody reaped is a zombie: not alive)
  local f=$DIR/$1.pid pid state
  [[ $1 == party-* ]] || f=$DIR/node$1.pid
  [[ -f $f ]] || return 1
  pid=$(cat "$f")
  state=$(ps -o stat= -p "$pid" 2>/dev/null) || return 1
  [[ -n $state && $state != Z* ]] && echo "$pid"
}

# The cluster CA and every certificate, made once; admin.env for the operator's shell.
pki() {
  (umask 077; mkdir -p "$DIR")
  if [[ ! -f $PKI/ca.crt ]]; then
    "$BIN/mpcctl" pki init --dir "$PKI" >/dev/null
    for i in $(seq 1 $N); do
      "$BIN/mpcctl" pki issue --dir "$PKI" --role coordinator --name "$i" >/dev/null
    done
    for p in $(seq 1 $PARTIES); do
      "$BIN/mpcctl" pki issue --dir "$PKI" --role party --name "party-$p" >/dev/null
    done
    "$BIN/mpcctl" pki issue --dir "$PKI" --role client --name admin --grant admin >/dev/null
  fi
  # The admin signs key policies and enrolments; the initiator approves signings. Made once
  # (a cluster made before they existed gets them now); the parties trust the admin's key.
  local key
  for key in "$ADMIN_SIGNING_KEY" "$INITIATOR_SIGNING_KEY"; do
    [[ -f $key ]] || "$BIN/mpcctl" signing-key new --out "$key" >/dev/null
  done
  ADMIN_PUBLIC_KEY=$("$BIN/mpcctl" signing-key public "$ADMIN_SIGNING_KEY")
  (umask 077; cat >"$DIR/admin.env" <<ENV
# source this file: mpcctl then talks to the local cluster as its admin, signs key policies
# and enrolments as the admin and approves signings as an initiator.
export MPC_ENDPOINTS=$(seq -s, -f "https://127.0.0.1:%g" 50051 50055)
export MPC_CA_CERT=$PKI/ca.crt
export MPC_CLIENT_CERT=$PKI/client/admin.crt
export MPC_CLIENT_KEY=$PKI/client/admin.key
export MPC_ADMIN_KEY=$ADMIN_SIGNING_KEY
export MPC_INITIATOR_KEY=$INITIATOR_SIGNING_KEY
ENV
  )
}

# What `mpc-party identity` prints for a party (its identity is made on first use: asked
# before the party first starts, so that only one process ever makes it).
party_identity() { # party-N
  "$BIN/mpc-party" --party-id "$1" --data-dir "$DIR/$1" --master-key-file "$DIR/$1.key" \
    identity 2>>"$DIR/$1.log" | grep -E '^[0-9a-f]{128}$' | tail -n1 || true
}

# The admin enrols a party's identity; enrolling it again with the same identity only renews
# the admin's signature.
enrol() { # party-N identity
  local out tries
  [[ ${#2} == 128 ]] || { echo "$1: no identity from mpc-party identity; its log: $DIR/$1.log" >&2; tail -n 5 "$DIR/$1.log" >&2; exit 1; }
  for tries in 1 2 3 4 5; do
    # shellcheck source=/dev/null
    if out=$(source "$DIR/admin.env" && "$BIN/mpcctl" --timeout 10s party enroll --id "$1" --identity "$2" 2>&1); then
      return 0
    fi
    sleep 1
  done
  echo "enrolling $1 failed: $out" >&2
  exit 1
}

up() {
  build
  pki
  for i in $(seq 1 $N); do
    if running_pid "$i" >/dev/null; then continue; fi
    MPC_TLS__CA_CERT=$PKI/ca.crt MPC_TLS__CERT=$PKI/coordinator/$i.crt MPC_TLS__KEY=$PKI/coordinator/$i.key \
    MPC_LOG__FILTER=${MPC_LOG__FILTER:-info,openraft=warn} nohup "$BIN/mpc-coordinator" \
      --node-id "$i" \
      --grpc-listen "127.0.0.1:$((50050 + i))" \
      --http-listen "127.0.0.1:$((8079 + i))" \
      --raft-listen "127.0.0.1:$((50060 + i))" \
      --data-dir "$DIR/node$i" \
      --initial-members "$MEMBERS" >>"$DIR/node$i.log" 2>&1 &
    echo $! >"$DIR/node$i.pid"
  done
  local deadline=$((SECONDS + 60))
  for i in $(seq 1 $N); do
    until curl -sf "http://127.0.0.1:$((8079 + i))/ready" >/dev/null 2>&1; do
      if ((SECONDS > deadline)); then
        echo "node $i is not ready after 60 s; its log: $DIR/node$i.log" >&2
        tail -n 20 "$DIR/node$i.log" >&2 || true
        exit 1
      fi
      sleep 0.2
    done
  done
  local -A identity=()
  for p in $(seq 1 $PARTIES); do
    local name=party-$p
    if running_pid "$name" >/dev/null; then
      identity[$name]=$(party_identity "$name")
      continue
    fi
    if [[ ! -f $DIR/$name.key ]]; then
      (umask 077; head -c 32 /dev/urandom | od -An -tx1 | tr -d ' \n' >"$DIR/$name.key")
    fi
    local import=()
    if [[ -n ${MPC_LOCAL_PRIMES:-} && ! -d $DIR/$name ]]; then
      sed -n "${p}p" "$MPC_LOCAL_PRIMES" >"$DIR/$name.primes"
      import=(--import-primes "$DIR/$name.primes")
    fi
    identity[$name]=$(party_identity "$name")
    MPC_LOG__FILTER=${MPC_LOG__FILTER:-info} nohup "$BIN/mpc-party" \
      --party-id "$name" \
      --admin-keys "$ADMIN_PUBLIC_KEY" \
      --data-dir "$DIR/$name" \
      --coordinators "$ENDPOINTS" \
      --http-listen "127.0.0.1:$((8090 + p))" \
      --ca-cert "$PKI/ca.crt" --tls-cert "$PKI/party/$name.crt" --tls-key "$PKI/party/$name.key" \
      --master-key-file "$DIR/$name.key" "${import[@]}" >>"$DIR/$name.log" 2>&1 &
    echo $! >"$DIR/$name.pid"
  done
  # A party attaches (is ready) only once an admin has enrolled it.
  for p in $(seq 1 $PARTIES); do
    enrol "party-$p" "${identity[party-$p]}"
  done
  for p in $(seq 1 $PARTIES); do
    until curl -sf "http://127.0.0.1:$((8090 + p))/ready" >/dev/null 2>&1; do
      if ((SECONDS > deadline)); then
        echo "party-$p is not connected after 60 s; its log: $DIR/party-$p.log" >&2
        tail -n 20 "$DIR/party-$p.log" >&2 || true
        exit 1
      fi
      sleep 0.2
    done
  done
  echo "5 coordinators and $PARTIES parties ready (data and logs in $DIR)"
  for i in $(seq 1 $N); do
    echo "  node $i:    gRPC https://127.0.0.1:$((50050 + i))  Raft 127.0.0.1:$((50060 + i))  HTTP http://127.0.0.1:$((8079 + i))"
  done
  for p in $(seq 1 $PARTIES); do
    echo "  party-$p: HTTP http://127.0.0.1:$((8090 + p))"
  done
  echo "  admin credentials and signing keys: source $DIR/admin.env"
  status
}

status() {
  # shellcheck source=/dev/null
  (source "$DIR/admin.env" && "$BIN/mpcctl" --timeout 5s cluster status)
}

stop_pid() {
  local pid=$1
  kill "$pid" 2>/dev/null || true
  for _ in $(seq 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
  kill -9 "$pid" 2>/dev/null || true
}

down() {
  # The DVN relayers and their devnet first (scripts/local-dvn.sh), if they run here.
  if [[ -d $DIR/dvn ]]; then MPC_LOCAL_CLUSTER_DIR=$DIR scripts/local-dvn.sh down >/dev/null || true; fi
  for p in $(seq 1 $PARTIES); do
    if pid=$(running_pid "party-$p"); then stop_pid "$pid"; fi
    rm -f "$DIR/party-$p.pid"
  done
  for i in $(seq 1 $N); do
    if pid=$(running_pid "$i"); then stop_pid "$pid"; fi
    rm -f "$DIR/node$i.pid"
  done
  if [[ ${1:-} == --clean ]]; then
    rm -rf "$DIR"
    echo "stopped; data deleted"
  else
    echo "stopped; data kept in $DIR"
  fi
}

case ${1:-} in
  up) up ;;
  status) status ;;
  down) shift; down "${1:-}" ;;
  *) echo "usage: $0 up|status|down [--clean]" >&2; exit 2 ;;
esac
