#!/usr/bin/env bash
# Rolling restart (SIGTERM, then start) of every coordinator, then of every party, one at a
# time, each back to healthy before the next, while the load runs. Repeated
# MPC_CHAOS_ROUNDS times (default 1: a rolling restart is already eight faults).
set -euo pipefail
DEFAULT_ROUNDS=1
source "$(dirname "$0")/lib.sh"
start_run restart
start_load
sleep 3
for round in $(seq 1 "$ROUNDS"); do
  for s in "${COORDINATORS[@]}" "${PARTIES[@]}"; do
    nemesis restart "$s"
    docker restart -t 10 "$(container_of "$s")" >/dev/null
    wait_healthy 120 "$s" || die "$s did not come back"
    [[ $s == coordinator-* ]] && converge
    sleep 1
  done
done
stop_load
# Floors per round (eight restarts), from runs on this machine (chaos/results/,
# README) with margin. ECDSA signings without a presignature take about 10 s on two busy
# cores, so few complete. The load's first ECDSA signing takes the presignature it waited
# for (lib.sh: --presignature-wait): one presignature-served signing per run, whatever the
# faults (later ones depend on the pool refilling under the load).
check --min-writes $((1000 * ROUNDS)) --min-reads $((1000 * ROUNDS)) \
  --min-signed-ed25519 $((20 * ROUNDS)) --min-signed-bip340 $((20 * ROUNDS)) \
  --min-signed-ecdsa $((3 * ROUNDS)) --min-presigned 1 --probes 0
