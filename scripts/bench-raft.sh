#!/usr/bin/env bash
# The coordinator Raft group side by side with etcd, on this machine, in one run.
#
# Same workload for both: ~1 KiB writes over gRPC (ours: Sessions.CreateKeygen, a session
# record with a 1 KiB description; etcd: KV.Put of a 1 KiB value), 1, 16 and 64 concurrent
# clients spread over the five members, for BENCH_SECONDS each. Then failover: SIGKILL the
# leader and time until a surviving member acknowledges a write, BENCH_TRIALS times each.
# Both run five members on loopback with their data in the same directory tree, with their
# default timing (ours: heartbeat 50 ms, election 150-300 ms; etcd: heartbeat 100 ms,
# election 1000 ms). Ours runs twice: as deployed (TLS 1.3 on every link, mutual TLS between
# members, every call authenticated by the client's certificate) and with
# --insecure-plaintext, to show what security costs. The benchmark is one client principal
# driving the whole cluster, so its per-principal call rate limit is off (with TLS; a
# plain-text node limits no one); every other limit stays at its default. Each keygen carries its key policy,
# signed by the admin before the timed phase (the client's work, not the cluster's); the
# parties it names do not run, and mpc-bench enrols them as the admin with identities nobody
# holds. Writes docs/benchmarks/raft.md (BENCH_REPORT=FILE writes elsewhere, e.g. for a
# shortened run).
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
scripts/install-deps.sh
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$HOME/.cache/mpc/target}
cargo build --release -q -p mpc-coordinator -p mpc-cli -p mpc-bench
BIN=$CARGO_TARGET_DIR/release
SECONDS_EACH=${BENCH_SECONDS:-10}
TRIALS=${BENCH_TRIALS:-10}
REPORT=${BENCH_REPORT:-docs/benchmarks/raft.md}
# Seconds between a restarted member reporting ready and the next kill, so that it has caught
# up with the log and each trial starts from a settled five-member cluster.
SETTLE=${BENCH_SETTLE:-2}
CLIENTS=(${BENCH_CLIENTS:-1 16 64})
WORK=$(mktemp -d "${TMPDIR:-/tmp}/mpc-bench-raft.XXXXXX")
RESULTS=$WORK/results.jsonl
declare -A PIDS=()

cleanup() {
  for pid in "${PIDS[@]}"; do kill -9 "$pid" 2>/dev/null || true; done
  wait 2>/dev/null || true
  rm -rf "$WORK"
}
trap cleanup EXIT

# Waits up to 60 s for a command to succeed; on failure shows the member's log and stops.
wait_until() { # what log -- command...
  local what=$1 log=$2 deadline=$((SECONDS + 60))
  shift 2
  until "$@" >/dev/null 2>&1; do
    ((SECONDS < deadline)) || { echo "$what not ready" >&2; tail "$log" >&2; exit 1; }
    sleep 0.05
  done
}

relabel() { sed "s/\"target\":\"$1\"/\"target\":\"$2\"/"; }

# Writes for each client count, then failover trials; the system's functions are
# <system>_start N [existing], <system>_wait_ready and <system>_leader.
measure() { # system endpoints client-port-base [label]
  local sys=$1 endpoints=$2 base=$3 label=${4:-$1} c t i leader survivors
  for i in 1 2 3 4 5; do "${sys}_start" "$i"; done
  "${sys}_wait_ready"
  for c in "${CLIENTS[@]}"; do
    "$BIN/mpc-bench" write --target "$sys" --endpoints "$endpoints" --clients "$c" \
      --duration "${SECONDS_EACH}s" | relabel "$sys" "$label" | tee -a "$RESULTS"
  done
  for t in $(seq 1 "$TRIALS"); do
    leader=$("${sys}_leader")
    survivors=$(for i in 1 2 3 4 5; do [[ $i == "$leader" ]] || printf '127.0.0.1:%s,' $((base + i)); done)
    "$BIN/mpc-bench" failover --target "$sys" --endpoints "${survivors%,}" \
      --kill-pid "${PIDS[$sys$leader]}" | relabel "$sys" "$label" | tee -a "$RESULTS"
    "${sys}_start" "$leader" existing
    "${sys}_wait_ready"
    sleep "$SETTLE"
  done
  for i in 1 2 3 4 5; do kill "${PIDS[$sys$i]}" 2>/dev/null || true; unset "PIDS[$sys$i]"; done
  wait 2>/dev/null || true
}

# ---------------------------------------------------------------- ours
MEMBERS=""
for i in 1 2 3 4 5; do
  MEMBERS+="${MEMBERS:+,}$i=127.0.0.1:$((51050 + i))=127.0.0.1:$((9179 + i))=127.0.0.1:$((51060 + i))"
done
MPC_ENDPOINTS=$(seq -s, 1 5 | sed -E 's/([0-9])/127.0.0.1:5105\1/g')
# The PKI of the secure run; the load and mpcctl present the bench client's certificate.
PKI=$WORK/pki
"$BIN/mpcctl" pki init --dir "$PKI" >/dev/null
for i in 1 2 3 4 5; do "$BIN/mpcctl" pki issue --dir "$PKI" --role coordinator --name "$i" >/dev/null; done
"$BIN/mpcctl" pki issue --dir "$PKI" --role client --name bench --grant admin >/dev/null
export MPC_CA_CERT=$PKI/ca.crt MPC_CLIENT_CERT=$PKI/client/bench.crt MPC_CLIENT_KEY=$PKI/client/bench.key
# The admin signs the keygens' policies and the enrolments; the policies name the initiator.
"$BIN/mpcctl" signing-key new --out "$PKI/admin-signing.key" >/dev/null
"$BIN/mpcctl" signing-key new --out "$PKI/initiator-signing.key" >/dev/null
export MPC_ADMIN_KEY=$PKI/admin-signing.key MPC_INITIATOR_KEY=$PKI/initiator-signing.key
MODE=tls

mpc_start() {
  local i=$1 plain=()
  [[ $MODE == plain ]] && plain=(--insecure-plaintext)
  MPC_TLS__CA_CERT=$PKI/ca.crt MPC_TLS__CERT=$PKI/coordinator/$i.crt MPC_TLS__KEY=$PKI/coordinator/$i.key \
  MPC_LOG__FILTER=warn MPC_LIMITS__REQUESTS_PER_SECOND=0 \
  "$BIN/mpc-coordinator" --node-id "$i" "${plain[@]}" \
    --grpc-listen "127.0.0.1:$((51050 + i))" --http-listen "127.0.0.1:$((9179 + i))" \
    --raft-listen "127.0.0.1:$((51060 + i))" \
    --data-dir "$WORK/mpc-$MODE$i" --initial-members "$MEMBERS" >>"$WORK/mpc$i.log" 2>&1 &
  PIDS[mpc$i]=$!
}

mpc_wait_ready() {
  local i
  for i in 1 2 3 4 5; do
    wait_until "mpc node $i" "$WORK/mpc$i.log" curl -sf "http://127.0.0.1:$((9179 + i))/ready"
  done
}

mpc_leader() {
  "$BIN/mpcctl" --endpoints "$MPC_ENDPOINTS" --output json --timeout 10s cluster status |
    python3 -c 'import json,sys; print(json.load(sys.stdin)["leader"])'
}

echo "== mpc: five coordinators, TLS and authentication on"
measure mpc "$MPC_ENDPOINTS" 51050
echo "== mpc: five coordinators, --insecure-plaintext"
MODE=plain
export MPC_INSECURE_PLAINTEXT=1
measure mpc "$MPC_ENDPOINTS" 51050 mpc-plain
unset MPC_INSECURE_PLAINTEXT

# ---------------------------------------------------------------- etcd
CLUSTER=""
for i in 1 2 3 4 5; do CLUSTER+="${CLUSTER:+,}e$i=http://127.0.0.1:$((23800 + i))"; done
ETCD_ENDPOINTS=$(for i in 1 2 3 4 5; do printf '127.0.0.1:%s,' $((23790 + i)); done)
ETCD_ENDPOINTS=${ETCD_ENDPOINTS%,}

etcd_start() {
  local i=$1 state=${2:-new}
  etcd --name "e$i" --data-dir "$WORK/etcd$i" \
    --listen-client-urls "http://127.0.0.1:$((23790 + i))" \
    --advertise-client-urls "http://127.0.0.1:$((23790 + i))" \
    --listen-peer-urls "http://127.0.0.1:$((23800 + i))" \
    --initial-advertise-peer-urls "http://127.0.0.1:$((23800 + i))" \
    --initial-cluster "$CLUSTER" --initial-cluster-state "$state" \
    --log-level error >>"$WORK/etcd$i.log" 2>&1 &
  PIDS[etcd$i]=$!
}

etcd_healthy() { curl -sf "http://127.0.0.1:$((23790 + $1))/health" | grep -q '"health":"true"'; }

etcd_wait_ready() {
  local i
  for i in 1 2 3 4 5; do
    wait_until "etcd member $i" "$WORK/etcd$i.log" etcd_healthy "$i"
  done
}

etcd_leader() { # the member number (1-5) of the leader
  ETCDCTL_API=3 etcdctl --endpoints "$ETCD_ENDPOINTS" endpoint status -w json |
    python3 -c '
import json, sys
for s in json.load(sys.stdin):
    st = s["Status"]
    if st["header"]["member_id"] == st["leader"]:
        print(int(s["Endpoint"].rsplit(":", 1)[1]) - 23790)
        break'
}

echo "== etcd $(etcd --version | head -1 | awk '{print $3}'): five members"
measure etcd "$ETCD_ENDPOINTS" 23790

# ---------------------------------------------------------------- report
mkdir -p "$(dirname "$REPORT")"
python3 scripts/bench_report.py raft "$RESULTS" "$(nproc)" "$SECONDS_EACH" "$TRIALS" >"$REPORT"
cat "$REPORT"
