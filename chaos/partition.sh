#!/usr/bin/env bash
# Cuts the network while the load runs, three ways: the leader alone, a minority of two
# (the leader and a follower), then the majority side (three nodes, the leader among them).
# In each, a write inside the cut-off minority must not be acknowledged and a write on the
# majority must be; the load follows the majority. Then heal, converge, next.
set -euo pipefail
source "$(dirname "$0")/lib.sh"
start_run partition
start_load
sleep 3

others_than() { # services to leave out...
  local s x keep
  for s in "${COORDINATORS[@]}"; do
    keep=1
    for x in "$@"; do [[ $s == "$x" ]] && keep=0; done
    ((keep)) && echo "$s"
  done
  return 0
}

cut() { # label "minority services" "majority services" load-follows-side
  local label=$1 minority=($2) majority=($3) moved side
  read -r old term < <(leader)
  log "phase $label: minority ${minority[*]} | majority ${majority[*]} (leader coordinator-$old, term $term)"
  if [[ $4 == side ]]; then moved=("${majority[@]}"); else moved=("${minority[@]}"); fi
  isolate "${moved[@]}"
  side=$SIDE
  # On the majority side's phase the parties stay on the cluster network with the minority:
  # no signing can complete until the heal.
  if [[ $4 == side ]]; then
    nemesis partition "$label: ${minority[*]} cut off" parties-cut-off
  else
    nemesis partition "$label: ${minority[*]} cut off"
  fi
  # The load stays with the majority.
  [[ $4 == side ]] && docker network connect "$side" "$LOAD"
  read -r new new_term < <(wait_new_leader_among "${majority[*]}")
  log "majority leader coordinator-$new, term $new_term"
  probe "${minority[0]}" fail "minority@${minority[0]}"
  observe_inside "${minority[0]}" 2
  probe "${majority[0]}" ok "majority@${majority[0]}"
  sleep 3
  nemesis heal "$label"
  heal "$side" "${moved[@]}"
  converge
  sleep 2
}

# A leader among `services` (asked from inside the first of them).
wait_new_leader_among() { # "services"
  local members=($1) deadline=$((SECONDS + 30)) id term s
  while ((SECONDS < deadline)); do
    if read -r id term < <(leader "${members[0]}" 2>/dev/null); then
      for s in "${members[@]}"; do
        [[ $s == "coordinator-$id" ]] && { echo "$id $term"; return 0; }
      done
    fi
    sleep 0.2
  done
  die "no leader among ${members[*]} within 30 s"
}

for round in $(seq 1 "$ROUNDS"); do
  read -r l _ < <(leader)
  cut "leader alone" "coordinator-$l" "$(others_than "coordinator-$l" | xargs)" minority

  read -r l _ < <(leader)
  f=$(others_than "coordinator-$l" | sed -n 1p)  # sed reads all: head could SIGPIPE the writer (pipefail)
  cut "minority of two" "coordinator-$l $f" "$(others_than "coordinator-$l" "$f" | xargs)" minority

  read -r l _ < <(leader)
  rest=($(others_than "coordinator-$l"))
  cut "majority side" "${rest[2]} ${rest[3]}" "coordinator-$l ${rest[0]} ${rest[1]}" side
done
stop_load
# Floors per round (three phases, two probes each), from runs on this machine (chaos/results/,
# README) with margin. ECDSA signings without a presignature take about 10 s on two busy
# cores, so few complete. The load's first ECDSA signing takes the presignature it waited
# for (lib.sh: --presignature-wait): one presignature-served signing per run, whatever the
# faults (later ones depend on the pool refilling under the load).
check --min-writes $((1000 * ROUNDS)) --min-reads $((1000 * ROUNDS)) \
  --min-signed-ed25519 $((10 * ROUNDS)) --min-signed-bip340 $((10 * ROUNDS)) \
  --min-signed-ecdsa $((3 * ROUNDS)) --min-presigned 1 --probes $((6 * ROUNDS))
