#!/usr/bin/env bash
# DVN relayer speed through the whole pipeline: packets sent on the devnet's source chain
# (a block a second, as a live chain), discovered, verified and signed by each relayer, the
# signatures gathered in the job book (Raft), one DVN.execute per batch on the target; timed
# until PayloadVerified shows on the target. Two quorums of the reference 2-of-3: dvn-1 and
# dvn-2 on SoftHSM2 tokens (dvn-3 stopped), then dvn-1 (HSM) with dvn-3 (a platform key: a
# CGGMP21 signing through the cluster; dvn-2 stopped). Each: packets one at a time (latency
# without queueing), then a burst (throughput). Writes docs/benchmarks/dvn.md
# (BENCH_REPORT=FILE writes elsewhere; BENCH_DVN_SINGLE=N and BENCH_DVN_BURST=N set the counts).
# It runs its own local cluster, devnet and relayers in a temporary directory, on the local
# cluster's usual ports: stop a running local cluster first.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
scripts/install-deps.sh
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$HOME/.cache/mpc/target}
SINGLE=${BENCH_DVN_SINGLE:-20}
BURST=${BENCH_DVN_BURST:-200}
REPORT=${BENCH_REPORT:-docs/benchmarks/dvn.md}
VENV=${MPC_VENV:-$HOME/.cache/mpc/venv}
WORK=$(mktemp -d)
RAW=$WORK/results.jsonl
export MPC_LOCAL_CLUSTER_DIR=$WORK/cluster
export MPC_LOCAL_PRIMES=$ROOT/crates/tss/testdata/primes.jsonl
export DVN_DEVNET_DIR=$MPC_LOCAL_CLUSTER_DIR/dvn/devnet
export MPC_PROFILE=release
cleanup() { scripts/local-cluster.sh down --clean >/dev/null 2>&1 || true; rm -rf "$WORK"; }
trap cleanup EXIT

scripts/local-dvn.sh up
: >"$RAW"
measure() { # label mode count
  echo "== $1: $2, $3 packets"
  "$VENV/bin/python" devnet/measure.py --label "$1" --mode "$2" --count "$3" --timeout 300 --json "$RAW" |
    tail -n 1
}

scripts/local-dvn.sh stop dvn-3
measure "HSM quorum (dvn-1 + dvn-2)" single "$SINGLE"
measure "HSM quorum (dvn-1 + dvn-2)" burst "$BURST"

scripts/local-dvn.sh up >/dev/null
scripts/local-dvn.sh stop dvn-2
measure "HSM + platform quorum (dvn-1 + dvn-3)" single "$SINGLE"
measure "HSM + platform quorum (dvn-1 + dvn-3)" burst "$BURST"

mkdir -p "$(dirname "$REPORT")"
"$VENV/bin/python" - "$RAW" "$REPORT" "$SINGLE" "$BURST" <<'PY'
import json, os, sys, time
raw, report, single, burst = sys.argv[1:5]
runs = [json.loads(line) for line in open(raw)]
cpu = "?"
for line in open("/proc/cpuinfo"):
    if line.startswith("model name"):
        cpu = line.split(":", 1)[1].strip()
        break
ms = lambda v: "-" if v is None else "%.0f" % v
out = [
    "# DVN relayer speed",
    "",
    "Measured %s on %d cores (%s), release build." % (time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()), os.cpu_count(), cpu),
    "",
    "Command: `scripts/bench-dvn.sh` (BENCH_DVN_SINGLE=%s BENCH_DVN_BURST=%s)" % (single, burst),
    "",
    "The whole pipeline on loopback: a packet sent on the devnet's source chain (py-evm behind JSON-RPC, an empty block every second besides the transactions' own), "
    "found by each relayer's listener (`eth_getLogs`), checked and signed by each relayer, the verdicts and the submission lease in the cluster's Raft job book "
    "(five coordinators), `DVN.execute` sent to the target chain, whose DVN contract checks the quorum's signatures with `ecrecover`. "
    "*After confirmations*: from the moment the source head reached the packet's confirmations (%d; the receive library's) to `PayloadVerified` on the target; "
    "*after send*: from the send's receipt. A watcher polls both chains every 20 ms. *One at a time*: the next packet is sent once the last is verified; "
    "*burst*: all sent as fast as the source chain takes them, packets per second from the first send to the last verification. "
    "Every packet sent was verified on the target exactly once (lost and double columns)." % (runs[0]["confirmations"] if runs else 0),
    "",
    "| quorum | mode | packets | lost | verified twice | packets/s | after confirmations p50 / p99 / max (ms) | after send p50 / p99 (ms) |",
    "|---|---|---|---|---|---|---|---|",
]
for r in runs:
    c, s = r["after_confirmations_ms"], r["after_send_ms"]
    out.append("| %s | %s | %d | %d | %d | %.1f | %s / %s / %s | %s / %s |" % (
        r["label"], "one at a time" if r["mode"] == "single" else "burst", r["packets"], r["lost"], r["double_verified"],
        r["packets_per_second"], ms(c["p50"]), ms(c["p99"]), ms(c["max"]), ms(s["p50"]), ms(s["p99"])))
out += [
    "",
    "The aim: under one second of added latency per packet after its confirmations, and hundreds of packets per second when batched.",
    "",
]
open(report, "w").write("\n".join(out))
print("\n".join(out))
PY
echo "report: $REPORT"
