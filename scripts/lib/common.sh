# Shared by the cluster and chaos scripts: the compose command and container lookups.
# Sourced, not run.

MPC_ROOT=${MPC_ROOT:-$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)}
export MPC_PROJECT=${MPC_PROJECT:-mpc}
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$HOME/.cache/mpc/target}
COORDINATORS=(coordinator-1 coordinator-2 coordinator-3 coordinator-4 coordinator-5)
PARTIES=(party-1 party-2 party-3)
# Inside the compose network every coordinator answers on gRPC 50051 and HTTP 8080.
IN_NETWORK_ENDPOINTS=coordinator-1:50051,coordinator-2:50051,coordinator-3:50051,coordinator-4:50051,coordinator-5:50051
# The compose cluster's PKI, the nodes' secret directories and the admin's credentials
# (docker-compose.yml mounts .cluster/secrets/<service> into each node). The admin's files,
# signing keys included, are in .cluster/admin/: mounted only into the tools' containers.
export MPC_CLUSTER_DIR=${MPC_CLUSTER_DIR:-$MPC_ROOT/.cluster}
# The admins' Ed25519 public keys the parties trust (comma separated), one file per cluster
# directory; compose() hands it to the parties as MPC_ADMIN_KEYS.
admin_keys_file() { echo "$MPC_CLUSTER_DIR/admin-keys"; }
# The user the image's processes run as; node secrets belong to it.
IMAGE_UID=10001

image_name() {
  local img=""
  [[ -f $MPC_ROOT/.env ]] && img=$(sed -n 's/^MPC_IMAGE=//p' "$MPC_ROOT/.env" | tail -n1)
  echo "${MPC_IMAGE:-${img:-mpc:latest}}"
}

# mpcctl from the image, as the calling user, with the cluster directory at /cluster.
ctl_image() {
  docker run --rm -u "$(id -u):$(id -g)" -v "$MPC_CLUSTER_DIR:/cluster" "$(image_name)" mpcctl "$@"
}

# Makes, once, the cluster CA and every node's certificate (coordinators are named for the
# compose network, localhost and the address the ports are published on), each node's secret
# directory (ca.crt, tls.crt, tls.key; a party's master.key), and the admin's credentials and
# signing keys (the admin's: key policies and enrolments; an initiator's: approvals) with an
# admin.env to source on the host, and the admin's public key for the parties.
ensure_secrets() {
  local dir=$MPC_CLUSTER_DIR bind="${1:-127.0.0.1}" i s extra=()
  (umask 077; mkdir -p "$dir/secrets" "$dir/admin")
  [[ $bind != 127.0.0.1 && $bind != 0.0.0.0 ]] && extra=(--host "$bind")
  if [[ ! -f $dir/pki/ca.crt ]]; then
    ctl_image pki init --dir /cluster/pki >/dev/null
    for i in 1 2 3 4 5; do
      ctl_image pki issue --dir /cluster/pki --role coordinator --name "$i" --host "coordinator-$i" "${extra[@]}" >/dev/null
    done
    for i in 1 2 3; do
      ctl_image pki issue --dir /cluster/pki --role party --name "party-$i" >/dev/null
    done
    ctl_image pki issue --dir /cluster/pki --role client --name admin --grant admin >/dev/null
  fi
  local fresh=()
  for i in 1 2 3 4 5; do
    s=$dir/secrets/coordinator-$i
    [[ -d $s ]] && continue
    (umask 077; mkdir -p "$s"
      cp "$dir/pki/ca.crt" "$s/ca.crt"
      cp "$dir/pki/coordinator/$i.crt" "$s/tls.crt"
      cp "$dir/pki/coordinator/$i.key" "$s/tls.key")
    fresh+=("coordinator-$i")
  done
  for i in 1 2 3; do
    s=$dir/secrets/party-$i
    [[ -d $s ]] && continue
    (umask 077; mkdir -p "$s"
      cp "$dir/pki/ca.crt" "$s/ca.crt"
      cp "$dir/pki/party/party-$i.crt" "$s/tls.crt"
      cp "$dir/pki/party/party-$i.key" "$s/tls.key"
      # A cluster made before secrets were files kept the key in .env: keep using it.
      old=$(sed -n "s/^MPC_PARTY_${i}_MASTER_KEY=//p" "$MPC_ROOT/.env" 2>/dev/null | tail -n1)
      if [[ -n $old ]]; then
        printf '%s' "$old" >"$s/master.key"
        echo "party-$i: master key moved from .env to $s/master.key; delete MPC_PARTY_${i}_MASTER_KEY from .env" >&2
      else
        head -c 32 /dev/urandom | od -An -tx1 | tr -d ' \n' >"$s/master.key"
      fi)
    fresh+=("party-$i")
  done
  # The nodes run as the image's user: their files become its own, still 0600.
  for s in "${fresh[@]}"; do
    docker run --rm -u 0 -v "$dir/secrets/$s:/secrets" "$(image_name)" \
      mpcctl pki set-owner --dir /secrets --uid "$IMAGE_UID" --gid "$IMAGE_UID" >/dev/null
  done
  local eps="" host=${bind/#0.0.0.0/127.0.0.1}
  for i in 1 2 3 4 5; do eps+="${eps:+,}https://$host:$((50050 + i))"; done
  (umask 077
    cp "$dir/pki/ca.crt" "$dir/admin/ca.crt"
    cp "$dir/pki/client/admin.crt" "$dir/admin/admin.crt"
    cp "$dir/pki/client/admin.key" "$dir/admin/admin.key")
  local key
  for key in admin-signing.key initiator-signing.key; do
    [[ -f $dir/admin/$key ]] || ctl_image signing-key new --out "/cluster/admin/$key" >/dev/null
  done
  [[ -s $(admin_keys_file) ]] ||
    ctl_image signing-key public /cluster/admin/admin-signing.key >"$(admin_keys_file)"
  (umask 077
    cat >"$dir/admin.env" <<ENV
# source this file: mpcctl on this host then talks to the compose cluster as its admin, signs
# key policies and enrolments as the admin and approves signings as an initiator.
export MPC_ENDPOINTS=$eps
export MPC_CA_CERT=$dir/admin/ca.crt
export MPC_CLIENT_CERT=$dir/admin/admin.crt
export MPC_CLIENT_KEY=$dir/admin/admin.key
export MPC_ADMIN_KEY=$dir/admin/admin-signing.key
export MPC_INITIATOR_KEY=$dir/admin/initiator-signing.key
ENV
  )
}

# The admin enrols each party's identity, as the party prints it (`mpc-party identity`, safe
# beside the running party once it has made its identity, which it does on its first start
# before it logs "share store opened"). Enrolling again with the same identity only renews
# the admin's signature.
enrol_parties() { # timeout_s
  local deadline=$((SECONDS + $1)) p id from
  for p in "${PARTIES[@]}"; do
    # (No grep -q on a pipe: under pipefail, the writer's SIGPIPE would fail the test.)
    until [[ -n $(container_of "$p") && $(docker logs "$(container_of "$p")" 2>&1) == *"share store opened"* ]]; do
      if ((SECONDS >= deadline)); then
        echo "$p has not opened its share store after $1 s" >&2
        compose logs --tail 15 "$p" >&2 || true
        return 1
      fi
      sleep 0.5
    done
    id=$(compose exec -T "$p" mpc-party identity 2>/dev/null | tr -d '\r' | grep -E '^[0-9a-f]{128}$' | tail -n1) || true
    [[ -n $id ]] || { echo "$p: mpc-party identity printed no identity" >&2; return 1; }
    from=$(any_running_coordinator) || { echo "no coordinator is running" >&2; return 1; }
    mpcctl_in "$from" --timeout 15s party enroll --id "$p" --identity "$id" >/dev/null ||
      { echo "enrolling $p failed" >&2; return 1; }
  done
}

# A tool of the image (mpcctl, mpc-chaos) run as the admin inside the network namespace of a
# service's container: it sees what that node sees (a cut-off node sees its side only), and
# the node's own files, secrets included, stay out of reach.
tool_in() { # service tool args...
  local s=$1; shift
  docker run --rm -i --network "container:$(container_of "$s")" \
    -u "$(id -u):$(id -g)" -v "$MPC_CLUSTER_DIR/admin:/admin:ro" "${ADMIN_TOOL_ENV[@]}" \
    "$(image_name)" "$@"
}

# What a tool container needs besides the /admin mount: the admin's credentials and the
# admin's and initiator's signing keys.
ADMIN_TOOL_ENV=(
  -e MPC_CA_CERT=/admin/ca.crt -e MPC_CLIENT_CERT=/admin/admin.crt -e MPC_CLIENT_KEY=/admin/admin.key
  -e MPC_ADMIN_KEY=/admin/admin-signing.key -e MPC_INITIATOR_KEY=/admin/initiator-signing.key
)

have_docker() { docker info >/dev/null 2>&1; }

# `docker compose` (the plugin) where present, else the standalone `docker-compose`. The
# parties get the admins' public keys (MPC_ADMIN_KEYS) from this cluster directory.
compose() {
  if [[ -s $(admin_keys_file) ]]; then
    MPC_ADMIN_KEYS=$(tr -d ' \n' <"$(admin_keys_file)")
    export MPC_ADMIN_KEYS
  fi
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
    --filter "label=com.docker.compose.service=$1" | sed -n 1p
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

# Runs mpcctl as the admin from a coordinator's network namespace (the image carries it), so
# the scripts need nothing on the host but Docker.
mpcctl_in() { # service args...
  local s=$1; shift
  tool_in "$s" mpcctl --endpoints "$IN_NETWORK_ENDPOINTS" "$@"
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
