#!/usr/bin/env bash
# The coordinator Raft group side by side with etcd, on this machine, in one run.
#
# Both run five members on loopback with their data in the same directory tree, with their
# default timing (ours: heartbeat 50 ms, election 150-300 ms; etcd: heartbeat 100 ms,
# election 1000 ms). Ours runs with its three parties (party-1..3) attached, started as
# scripts/local-cluster.sh starts them (own master keys, certificates, enrolled by the admin),
# and generates a schnorr-ed25519 key before anything is timed. Then, for 1, 16 and 64
# concurrent clients spread over the five members, BENCH_SECONDS each:
#   writes    the headline, a plain replicated write of ~1 KiB: ours Keys.UpdateKey setting
#             that key's description to 1 KiB, etcd KV.Put of a 1 KiB value under a new key;
#   signings  ours only: Sessions.CreateSigning of a 1 KiB message with that key, approved by
#             the key policy's initiator before the timed phase (the client's work, not the
#             cluster's); each client follows its session on WatchSession to the end before
#             it creates the next, so at most one session per client is open and none pile up.
#             Measured: the create's acknowledgement and the completed signature.
# The resident memory (VmRSS) of every coordinator, party and etcd member is read once idle
# (after startup and, for ours, key generation) and sampled every 100 ms through each load.
# Then failover: SIGKILL the leader and time until a surviving member acknowledges a plain
# write, BENCH_TRIALS times each. Ours runs twice: as deployed (TLS 1.3 on every link, mutual
# TLS between members and towards parties, every call authenticated by the client's
# certificate) and with --insecure-plaintext, to show what security costs. The benchmark is
# one client principal driving the whole cluster, so the per-principal call rate limit is off
# (with TLS; a plain-text node limits no one); every other limit stays at its default. The
# parties keep no prime pool (MPC_PRIME_POOL=0): FROST keys need no primes, and generating
# them would take a core away for minutes. Writes docs/benchmarks/raft.md (BENCH_REPORT=FILE
# writes elsewhere, e.g. for a shortened run: BENCH_SECONDS, BENCH_CLIENTS="1 16",
# BENCH_TRIALS, BENCH_SETTLE).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/install-deps.sh
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$HOME/.cache/mpc/target}
# The workspace's binaries, as the test command builds them: building a few crates alone
# unifies other features and compiles RocksDB's C++ again.
cargo build --release -q --workspace --bins --locked
BIN=$CARGO_TARGET_DIR/release
SECONDS_EACH=${BENCH_SECONDS:-10}
TRIALS=${BENCH_TRIALS:-10}
REPORT=${BENCH_REPORT:-docs/benchmarks/raft.md}
# Seconds between a restarted member reporting ready and the next kill, so that it has caught
# up with the log and each trial starts from a settled five-member cluster.
SETTLE=${BENCH_SETTLE:-2}
read -r -a CLIENTS <<<"${BENCH_CLIENTS:-1 16 64}"
WORK=$(mktemp -d "${TMPDIR:-/tmp}/mpc-bench-raft.XXXXXX")
RESULTS=$WORK/results.jsonl
declare -A PIDS=()

cleanup() {
  local pid
  for pid in "${PIDS[@]}"; do kill -9 "$pid" 2>/dev/null || true; done
  wait 2>/dev/null || true
  rm -rf "$WORK"
}
trap cleanup EXIT

# Waits up to 60 s for a command to succeed; on failure shows the process's log and stops.
wait_until() { # what log -- command...
  local what=$1 log=$2 deadline=$((SECONDS + 60))
  shift 2
  until "$@" >/dev/null 2>&1; do
    ((SECONDS < deadline)) || { echo "$what not ready" >&2; tail "$log" >&2; exit 1; }
    sleep 0.05
  done
}

relabel() { sed "s/\"target\":\"$1\"/\"target\":\"$2\"/"; }

# LABEL=PID of every process of the system under test, for `mpc-bench rss` and --rss; the
# leader's label says so.
rss_pids() { # system leader
  local sys=$1 leader=$2 i name out=""
  for i in 1 2 3 4 5; do
    name=$([[ $sys == mpc ]] && echo coordinator || echo member)-$i
    [[ $i == "$leader" ]] && name+=" (leader)"
    out+="${out:+,}$name=${PIDS[$sys$i]}"
  done
  if [[ $sys == mpc ]]; then
    for i in 1 2 3; do out+=",party-$i=${PIDS[party$i]}"; done
  fi
  echo "$out"
}

# Idle memory, the loads for each client count, then failover trials. The system's functions
# are <system>_start N [existing], <system>_wait_ready, <system>_prepare (ours: parties and a
# key), <system>_finish, <system>_leader and <system>_loads (the workloads it takes).
measure() { # system endpoints client-port-base [label]
  local sys=$1 endpoints=$2 base=$3 label=${4:-$1} c i leader survivors pids workload
  for i in 1 2 3 4 5; do "${sys}_start" "$i"; done
  "${sys}_wait_ready"
  "${sys}_prepare"
  pids=$(rss_pids "$sys" "$("${sys}_leader")")
  "$BIN/mpc-bench" rss --target "$sys" --pids "$pids" | relabel "$sys" "$label" | tee -a "$RESULTS"
  for workload in $("${sys}_loads"); do
    for c in "${CLIENTS[@]}"; do
      "$BIN/mpc-bench" write --target "$sys" --workload "$workload" --endpoints "$endpoints" \
        --clients "$c" --duration "${SECONDS_EACH}s" --rss "$pids" "${KEY_ARGS[@]}" |
        relabel "$sys" "$label" | tee -a "$RESULTS"
    done
  done
  for _ in $(seq 1 "$TRIALS"); do
    leader=$("${sys}_leader")
    survivors=$(for i in 1 2 3 4 5; do [[ $i == "$leader" ]] || printf '127.0.0.1:%s,' $((base + i)); done)
    "$BIN/mpc-bench" failover --target "$sys" --endpoints "${survivors%,}" \
      --kill-pid "${PIDS[$sys$leader]}" "${KEY_ARGS[@]}" | relabel "$sys" "$label" | tee -a "$RESULTS"
    "${sys}_start" "$leader" existing
    "${sys}_wait_ready"
    sleep "$SETTLE"
  done
  "${sys}_finish"
  for i in 1 2 3 4 5; do kill "${PIDS[$sys$i]}" 2>/dev/null || true; unset "PIDS[$sys$i]"; done
  wait 2>/dev/null || true
}

# ---------------------------------------------------------------- ours
MEMBERS=""
for i in 1 2 3 4 5; do
  MEMBERS+="${MEMBERS:+,}$i=127.0.0.1:$((51050 + i))=127.0.0.1:$((9179 + i))=127.0.0.1:$((51060 + i))"
done
MPC_ENDPOINTS=$(seq -s, 1 5 | sed -E 's/([0-9])/127.0.0.1:5105\1/g')
# The PKI of the secure run; the load and mpcctl present the bench client's certificate, the
# parties their own.
PKI=$WORK/pki
"$BIN/mpcctl" pki init --dir "$PKI" >/dev/null
for i in 1 2 3 4 5; do "$BIN/mpcctl" pki issue --dir "$PKI" --role coordinator --name "$i" >/dev/null; done
for i in 1 2 3; do "$BIN/mpcctl" pki issue --dir "$PKI" --role party --name "party-$i" >/dev/null; done
"$BIN/mpcctl" pki issue --dir "$PKI" --role client --name bench --grant admin >/dev/null
export MPC_CA_CERT=$PKI/ca.crt MPC_CLIENT_CERT=$PKI/client/bench.crt MPC_CLIENT_KEY=$PKI/client/bench.key
# The admin signs the key's policy and the parties' enrolments (the parties trust the admin's
# public key); the policy names the initiator, who approves each signing.
"$BIN/mpcctl" signing-key new --out "$PKI/admin-signing.key" >/dev/null
"$BIN/mpcctl" signing-key new --out "$PKI/initiator-signing.key" >/dev/null
export MPC_ADMIN_KEY=$PKI/admin-signing.key MPC_INITIATOR_KEY=$PKI/initiator-signing.key
ADMIN_PUBLIC_KEY=$("$BIN/mpcctl" signing-key public "$MPC_ADMIN_KEY")
# Each party's master key, for both runs (each run has its own share store).
for i in 1 2 3; do
  (umask 077; head -c 32 /dev/urandom | od -An -tx1 | tr -d ' \n' >"$WORK/party-$i.key")
done
MODE=tls
KEY_ARGS=()

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

# The three parties, each enrolled by the admin with the identity it made (as
# scripts/local-cluster.sh up does), then a 2-of-3 schnorr-ed25519 key for the loads.
mpc_prepare() {
  local i identity flags
  for i in 1 2 3; do
    # Each run has its own share store; in the plain-text one MPC_INSECURE_PLAINTEXT=1
    # (exported) turns the party's TLS off.
    flags=(--party-id "party-$i" --data-dir "$WORK/party-$MODE$i" --master-key-file "$WORK/party-$i.key")
    # Asked before the party starts, so that only one process ever makes the identity.
    identity=$("$BIN/mpc-party" "${flags[@]}" identity 2>>"$WORK/party-$i.log" |
      grep -E '^[0-9a-f]{128}$' | tail -n1) || true
    [[ ${#identity} == 128 ]] || { echo "party-$i: no identity" >&2; tail "$WORK/party-$i.log" >&2; exit 1; }
    MPC_LOG__FILTER=warn MPC_PRIME_POOL=0 "$BIN/mpc-party" "${flags[@]}" \
      --admin-keys "$ADMIN_PUBLIC_KEY" --coordinators "$MPC_ENDPOINTS" \
      --http-listen "127.0.0.1:$((9190 + i))" \
      --ca-cert "$PKI/ca.crt" --tls-cert "$PKI/party/party-$i.crt" --tls-key "$PKI/party/party-$i.key" \
      >>"$WORK/party-$i.log" 2>&1 &
    PIDS[party$i]=$!
    "$BIN/mpcctl" --endpoints "$MPC_ENDPOINTS" --timeout 30s party enroll --id "party-$i" \
      --identity "$identity" >/dev/null
  done
  # A party is ready once it is enrolled and attached to the cluster.
  for i in 1 2 3; do
    wait_until "party-$i" "$WORK/party-$i.log" curl -sf "http://127.0.0.1:$((9190 + i))/ready"
  done
  local key_id
  key_id=bench-$(cat /proc/sys/kernel/random/uuid)
  "$BIN/mpcctl" --endpoints "$MPC_ENDPOINTS" --timeout 30s keygen --scheme schnorr-ed25519 \
    --key-id "$key_id" --wait 60s >>"$WORK/keygen.log" 2>&1 ||
    { echo "generating the key failed" >&2; tail "$WORK/keygen.log" >&2; exit 1; }
  KEY_ARGS=(--key-id "$key_id")
}

mpc_finish() {
  local i
  for i in 1 2 3; do kill "${PIDS[party$i]}" 2>/dev/null || true; unset "PIDS[party$i]"; done
  KEY_ARGS=()
}

mpc_loads() { echo write signing; }

echo "== mpc: five coordinators and three parties, TLS and authentication on"
measure mpc "$MPC_ENDPOINTS" 51050
echo "== mpc: five coordinators and three parties, --insecure-plaintext"
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

etcd_prepare() { :; }
etcd_finish() { :; }
etcd_loads() { echo write; }

echo "== etcd $(etcd --version | head -1 | awk '{print $3}'): five members"
measure etcd "$ETCD_ENDPOINTS" 23790

# ---------------------------------------------------------------- report
mkdir -p "$(dirname "$REPORT")"
python3 scripts/bench_report.py raft "$RESULTS" "$(nproc)" "$SECONDS_EACH" "$TRIALS" >"$REPORT"
cat "$REPORT"
