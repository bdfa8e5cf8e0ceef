#!/usr/bin/env bash
# Kills the leader coordinator (SIGKILL) while the load runs, measures how long until writes
# are acknowledged again, restarts it, and repeats MPC_CHAOS_ROUNDS times (default 3).
set -euo pipefail
source "$(dirname "$0")/lib.sh"
start_run leader-kill
start_load
sleep 3
for round in $(seq 1 "$ROUNDS"); do
  read -r old term < <(leader)
  victim=coordinator-$old
  docker kill -s KILL "$(container_of "$victim")" >/dev/null
  nemesis kill "$victim"
  survivor=$(any_running_coordinator)
  read -r new new_term < <(wait_new_leader "$old" "$term" "$survivor")
  log "round $round: coordinator-$new leads term $new_term (was coordinator-$old, term $term)"
  sleep 2
  # The restart policy may already have brought it back.
  docker start "$(container_of "$victim")" >/dev/null
  nemesis start "$victim"
  converge
  sleep 2
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
