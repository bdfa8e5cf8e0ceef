#!/usr/bin/env bash
# Kills a party (SIGKILL) while signing sessions run: each session must complete (on the
# other two parties: the keys are 2-of-3) or fail with a reason, and signing must resume
# without the dead party. Then the party is restarted. MPC_CHAOS_ROUNDS times (default 3).
set -euo pipefail
source "$(dirname "$0")/lib.sh"
start_run party-kill
start_load --signers 4 --clients 2
sleep 3
for round in $(seq 1 "$ROUNDS"); do
  victim=${PARTIES[$(( (round - 1) % ${#PARTIES[@]} ))]}
  docker kill -s KILL "$(container_of "$victim")" >/dev/null
  nemesis kill "$victim"
  sleep 8
  docker start "$(container_of "$victim")" >/dev/null
  nemesis start "$victim"
  wait_healthy 120 "$victim" || die "$victim did not come back"
  sleep 3
done
stop_load
# Floors per round, from runs on this machine (chaos/results/,
# README) with margin. ECDSA signings without a presignature take about 10 s on two busy
# cores, so few complete. The load's first ECDSA signing takes the presignature it waited
# for (lib.sh: --presignature-wait): one presignature-served signing per run, whatever the
# faults (later ones depend on the pool refilling under the load).
check --min-writes $((300 * ROUNDS)) --min-reads $((300 * ROUNDS)) \
  --min-signed-ed25519 $((10 * ROUNDS)) --min-signed-bip340 $((10 * ROUNDS)) \
  --min-signed-ecdsa $((1 * ROUNDS)) --min-presigned 1 --probes 0
