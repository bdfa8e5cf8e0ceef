# Shared by the chaos scenarios: a run directory, the load container, fault bookkeeping and
# the checker. Sourced, not run. Each scenario records its faults as nemesis events, with the
# load's history beside them, and ends with `check`, which makes the final reads, judges the
# history, prints the one-line summary and writes report.md under chaos/results/.

source "$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)/scripts/lib/common.sh"
cd "$MPC_ROOT"

RESULTS=${MPC_CHAOS_RESULTS:-$MPC_ROOT/chaos/results}
# Rounds per scenario (faults injected); CI runs one.
ROUNDS=${MPC_CHAOS_ROUNDS:-${DEFAULT_ROUNDS:-3}}
# Upper bound of any load, whatever happens to the script.
LOAD_MAX_SECONDS=${MPC_CHAOS_LOAD_MAX_SECONDS:-600}
# How long the load may take to make its keys: the first ECDSA key of a group of parties
# waits for their auxiliary info (a prime pair each, minutes on a busy machine).
LOAD_SETUP_SECONDS=${MPC_CHAOS_SETUP_SECONDS:-600}
# The load starts once every ECDSA key has a presignature, so that the presignature path runs
# in every scenario (each demands one: --min-presigned 1).
PRESIGNATURE_WAIT_SECONDS=${MPC_CHAOS_PRESIGNATURE_WAIT_SECONDS:-300}
LOAD=""

log() { echo "[$(date +%H:%M:%S)] $*"; }
die() { echo "chaos: $*" >&2; exit 1; }

start_run() { # scenario
  SCENARIO=$1
  have_docker || die "no Docker engine answers (docker info failed)"
  for s in "${COORDINATORS[@]}" "${PARTIES[@]}"; do
    [[ -n $(container_of "$s") ]] || die "$s is not running: start the cluster first (scripts/start-cluster.sh)"
  done
  wait_healthy 120 "${COORDINATORS[@]}" "${PARTIES[@]}" || die "the cluster is not healthy before the run"
  RUN_DIR=$RESULTS/$SCENARIO-$(date +%Y%m%dT%H%M%S)
  mkdir -p "$RUN_DIR"
  HISTORY=$RUN_DIR/history.jsonl
  EVENTS=$RUN_DIR/events.jsonl
  : >"$HISTORY"; : >"$EVENTS"
  LOAD=${MPC_PROJECT}-chaos-load
  trap cleanup EXIT
  log "$SCENARIO: run directory $RUN_DIR"
}

# `parties-cut-off` marks a fault that leaves the parties unable to reach the coordinators'
# majority: the checker then demands no signing until it heals (it does demand a write).
nemesis() { # action target [parties-cut-off]
  local extra=""
  [[ ${3:-} == parties-cut-off ]] && extra=',"parties_cut_off":true'
  printf '{"type":"nemesis","at_us":%s,"action":"%s","target":"%s"%s}\n' "$(now_us)" "$1" "$2" "$extra" >>"$EVENTS"
  log "nemesis: $1 $2${3:+ ($3)}"
}

# The load runs in a container on the cluster's network, writing its history to the run
# directory, with the admin's files at /admin (credentials; the admin's signing key for its
# keys' policies, the initiator's for its signings' approvals); `stop_load` ends it gracefully.
start_load() { # extra mpc-chaos load args...
  docker rm -f -v "$LOAD" >/dev/null 2>&1 || true
  docker run -d --name "$LOAD" --network "$(network_name)" \
    --user "$(id -u):$(id -g)" -v "$RUN_DIR:/results" -v "$MPC_CLUSTER_DIR/admin:/admin:ro" \
    "${ADMIN_TOOL_ENV[@]}" "$(image_name)" mpc-chaos load --endpoints "$IN_NETWORK_ENDPOINTS" \
    --out /results/history.jsonl --duration "${LOAD_MAX_SECONDS}s" \
    --presignature-wait "${PRESIGNATURE_WAIT_SECONDS}s" "$@" >/dev/null
  # Faults begin once every key of every scheme exists and the clients run (the load's start
  # marker), not while keys are still being made: a fault then would test the setup.
  local deadline=$((SECONDS + LOAD_SETUP_SECONDS + PRESIGNATURE_WAIT_SECONDS))
  until grep -q '"type":"load","at_us":[0-9]*,"phase":"start"' "$HISTORY"; do
    if ((SECONDS > deadline)) || [[ $(docker inspect -f '{{.State.Running}}' "$LOAD" 2>/dev/null) != true ]]; then
      docker logs "$LOAD" >&2 || true
      die "the load did not start within ${LOAD_SETUP_SECONDS} s"
    fi
    sleep 0.5
  done
  # The partition probes write to the first register (sed reads all: head could SIGPIPE it).
  KEY_ID=$(sed -n 's/.*"type":"register","key_id":"\([^"]*\)".*/\1/p' "$HISTORY" | sed -n 1p)
  [[ -n $KEY_ID ]] || die "the load started without keys"
  log "load running (keys: $(grep -c '"type":"register"' "$HISTORY"); probe key $KEY_ID)"
}

stop_load() {
  docker stop -t 90 "$LOAD" >/dev/null
  local code; code=$(docker inspect -f '{{.State.ExitCode}}' "$LOAD")
  docker logs "$LOAD" >"$RUN_DIR/load.log" 2>&1 || true
  docker rm -v "$LOAD" >/dev/null
  [[ $code == 0 ]] || { cat "$RUN_DIR/load.log" >&2; die "the load exited with $code"; }
  log "load stopped"
}

# On any exit: no load left running, no node left cut off.
cleanup() {
  [[ -n $LOAD ]] && docker rm -f -v "$LOAD" >/dev/null 2>&1 || true
  local side cid service
  for side in "${SIDE_NETWORKS[@]}"; do
    docker network inspect "$side" >/dev/null 2>&1 || continue
    for cid in $(docker network inspect -f '{{range $id, $_ := .Containers}}{{$id}} {{end}}' "$side"); do
      service=$(docker inspect -f '{{index .Config.Labels "com.docker.compose.service"}}' "$cid" 2>/dev/null) || continue
      docker network disconnect -f "$side" "$cid" >/dev/null 2>&1 || true
      [[ -n $service ]] && docker network connect --alias "$service" "$(network_name)" "$cid" >/dev/null 2>&1 || true
    done
    docker network rm "$side" >/dev/null 2>&1 || true
  done
}

# mpc-chaos in the network namespace of a running container of the cluster (its own view).
chaos_in() { # service args...
  local s=$1; shift
  tool_in "$s" mpc-chaos "$@"
}

leader() { # [service to ask from] -> "id term"
  local from=${1:-$(any_running_coordinator)}
  chaos_in "$from" leader --endpoints "$IN_NETWORK_ENDPOINTS" --wait 20s
}

# Waits until a leader other than `old` leads a term above `old_term`, asking from `from`.
wait_new_leader() { # old old_term from
  local deadline=$((SECONDS + 30)) id term
  while ((SECONDS < deadline)); do
    if read -r id term < <(leader "$3" 2>/dev/null) && [[ $id != "$1" && $term -gt $2 ]]; then
      echo "$id $term"; return 0
    fi
    sleep 0.2
  done
  die "no new leader within 30 s after losing coordinator-$1"
}

# Waits until every coordinator answers ready and all agree on one leader and one term
# (asking the nodes themselves: Docker's health state lags by its check interval).
converge() {
  local started=$SECONDS
  local deadline=$((SECONDS + 120)) status
  while ((SECONDS < deadline)); do
    status=$(mpcctl_in "$(any_running_coordinator)" --output json cluster status 2>/dev/null) || { sleep 0.5; continue; }
    if python3 -c '
import json, sys
nodes = json.loads(sys.argv[1])["nodes"]
ok = len({n["term"] for n in nodes}) == 1 and sum(n["state"] == "leader" for n in nodes) == 1 and all(n["ready"] for n in nodes)
sys.exit(0 if ok else 1)' "$status"; then
      log "converged in $((SECONDS - started)) s"
      return 0
    fi
    sleep 0.5
  done
  echo "$status" >&2
  die "the coordinators did not converge on one leader and term"
}

# Moves `services` onto a network of their own (internal: nothing else is on it), cut off
# from everyone on the cluster network. Prints the side network's name.
SIDE_NETWORKS=()
isolate() { # services...
  local side=${MPC_PROJECT}_side_$$_${#SIDE_NETWORKS[@]} s cid
  docker network create --internal --label "mpc.chaos=$MPC_PROJECT" "$side" >/dev/null
  SIDE_NETWORKS+=("$side")
  for s in "$@"; do
    cid=$(container_of "$s")
    docker network disconnect "$(network_name)" "$cid"
    docker network connect --alias "$s" "$side" "$cid"
  done
  SIDE=$side
}

heal() { # side services...
  local side=$1 s cid; shift
  for s in "$@"; do
    cid=$(container_of "$s")
    docker network disconnect "$side" "$cid" 2>/dev/null || true
    docker network connect --alias "$s" "$(network_name)" "$cid"
  done
  docker network disconnect "$side" "$LOAD" >/dev/null 2>&1 || true
  docker network rm "$side" >/dev/null
}

# One write from inside `service` to its own gRPC port, recorded with what the partition
# requires of it (ok: acknowledged; fail: not acknowledged). Exit 3 is a recorded probe
# without the required outcome, which the checker reports; any other failure recorded
# nothing, and the checker's probe count (--probes) would catch it, but stop here, saying why.
probe() { # service expect label
  local budget=3s code=0
  [[ $2 == ok ]] && budget=15s
  chaos_in "$1" probe-write --endpoints 127.0.0.1:50051 --key-id "$KEY_ID" --expect "$2" \
    --label "$3" --budget "$budget" >>"$EVENTS" || code=$?
  case $code in
    0) ;;
    3) log "probe $3 did not get the required outcome (the checker reports it)" ;;
    *) die "probe $3 could not run (exit $code)" ;;
  esac
}

# Who the cut-off nodes think leads: the load cannot reach them, so ask from inside.
observe_inside() { # service seconds
  chaos_in "$1" observe --endpoints 127.0.0.1:50051 --duration "${2}s" >>"$EVENTS" ||
    die "observing from inside $1 failed"
}

# The checker, with the scenario's floors (--min-writes …, --probes) and any extra
# arguments. Every fault must be followed by an acknowledged write and, unless marked
# parties-cut-off, by a completed signing begun after it.
check() { # floor and extra checker args...
  local line code=0
  docker run --rm --network "$(network_name)" --user "$(id -u):$(id -g)" -v "$RUN_DIR:/results" \
    -v "$MPC_CLUSTER_DIR/admin:/admin:ro" "${ADMIN_TOOL_ENV[@]}" \
    "$(image_name)" mpc-chaos check --scenario "$SCENARIO" \
    --history /results/history.jsonl --history /results/events.jsonl \
    --endpoints "$IN_NETWORK_ENDPOINTS" --final-out /results/final.jsonl \
    --report /results/report.md "$@" >"$RUN_DIR/summary.txt" || code=$?
  line=$(tail -n1 "$RUN_DIR/summary.txt")
  echo "$line"
  echo "$(date -u +%FT%TZ) $line" >>"$RESULTS/summary.log"
  echo "report: $RUN_DIR/report.md"
  return $code
}
