# Shared by the cluster and chaos scripts: the compose command and container lookups.
# Sourced, not run.

MPC_ROOT=${MPC_ROOT:-$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)}
export MPC_PROJECT=${MPC_PROJECT:-mpc}
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$HOME/.cache/mpc/target}
COORDINATORS=(coordinator-1 coordinator-2 coordinator-3 coordinator-4 coordinator-5)
PARTIES=(party-1 party-2 party-3)
# Inside the compose network every coordinator answers on gRPC 50051 and HTTP 8080.
IN_NETWORK_ENDPOINTS=coordinator-1:50051,coordinator-2:50051,coordinator-3:50051,coordinator-4:50051,coordinator-5:50051

have_docker() { docker info >/dev/null 2>&1; }

# `docker compose` (the plugin) where present, else the standalone `docker-compose`.
compose() {
  if docker compose version >/dev/null 2>&1; then
    docker compose -p "$MPC_PROJECT" -f "$MPC_ROOT/docker-compose.yml" --project-directory "$MPC_ROOT" "$@"
  elif command -v docker-compose >/dev/null 2>&1; then
    docker-compose -p "$MPC_PROJECT" -f "$MPC_ROOT/docker-compose.yml" --project-directory "$MPC_ROOT" "$@"
  else
    echo "neither 'docker compose' nor 'docker-compose' is installed" >&2
    return 127
  fi
}

# The container id of a service (empty when it has none), from the labels both compose tools
# set: asking Docker directly takes milliseconds, asking docker-compose half a second.
container_of() {
  docker ps -aq --filter "label=com.docker.compose.project=$MPC_PROJECT" \
    --filter "label=com.docker.compose.service=$1" | head -n1
}

# The user-defined bridge every node is on.
network_name() { echo "${MPC_PROJECT}_mpc"; }

health_of() { # service -> healthy | unhealthy | starting | exited | missing
  local id; id=$(container_of "$1")
  [[ -n $id ]] || { echo missing; return; }
  docker inspect -f '{{if .State.Running}}{{if .State.Health}}{{.State.Health.Status}}{{else}}running{{end}}{{else}}exited{{end}}' "$id" 2>/dev/null || echo missing
}

wait_healthy() { # timeout_s service...
  local timeout=$1; shift
  local deadline=$((SECONDS + timeout)) s pending
  while :; do
    pending=()
    for s in "$@"; do [[ $(health_of "$s") == healthy ]] || pending+=("$s"); done
    ((${#pending[@]} == 0)) && return 0
    if ((SECONDS >= deadline)); then
      echo "not healthy after ${timeout}s: ${pending[*]}" >&2
      for s in "${pending[@]}"; do echo "--- $s ($(health_of "$s"))" >&2; compose logs --tail 15 "$s" >&2 || true; done
      return 1
    fi
    sleep 1
  done
}

# Runs mpcctl inside a running coordinator container (the image carries it), so the scripts
# need nothing on the host but Docker.
mpcctl_in() { # service args...
  local s=$1; shift
  docker exec -i "$(container_of "$s")" mpcctl --endpoints "$IN_NETWORK_ENDPOINTS" "$@"
}

# A coordinator container that is running, for commands that only need one.
any_running_coordinator() {
  local s
  for s in "${COORDINATORS[@]}"; do
    [[ $(health_of "$s") == healthy ]] && { echo "$s"; return 0; }
  done
  for s in "${COORDINATORS[@]}"; do
    [[ $(health_of "$s") =~ ^(unhealthy|starting|running)$ ]] && { echo "$s"; return 0; }
  done
  return 1
}

now_us() { date +%s%6N; }
