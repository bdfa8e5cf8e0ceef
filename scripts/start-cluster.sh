#!/usr/bin/env bash
# Starts the docker-compose cluster: five coordinators and three parties.
#   scripts/start-cluster.sh           build the image if there is none, up, wait until healthy
#   scripts/start-cluster.sh --build   rebuild the image first (after code changes)
# On first use it writes .env from .env.example, and makes the cluster's PKI, each node's
# secrets (certificate, key; a party's master key) under .cluster/secrets/ and the admin's
# credentials and signing keys under .cluster/admin/ (`source .cluster/admin.env`, then mpcctl
# talks to the cluster as the admin and signs as the admin and an initiator). The parties
# trust the admin's public key (.cluster/admin-keys); once they run, the admin enrols each
# one's identity (every start: enrolling the same identity again only renews it).
set -euo pipefail
source "$(dirname "$0")/lib/common.sh"
cd "$MPC_ROOT"

have_docker || { echo "start-cluster: no Docker engine answers (docker info failed)" >&2; exit 1; }

if [[ ! -f .env ]]; then
  (umask 077; cp .env.example .env)
  echo "wrote .env from .env.example"
fi

image=$(image_name)
if [[ ${1:-} == --build ]] || ! docker image inspect "$image" >/dev/null 2>&1; then
  scripts/build-image.sh
fi
bind=$(sed -n 's/^MPC_BIND=//p' .env | tail -n1); bind=${MPC_BIND:-${bind:-127.0.0.1}}
had_secrets=$([[ -d $MPC_CLUSTER_DIR/secrets/party-1 ]] && echo yes || echo no)
ensure_secrets "$bind"
[[ $had_secrets == yes ]] || echo "made the cluster PKI and node secrets in $MPC_CLUSTER_DIR (keep it safe: the parties' master keys are there)"

compose up -d --remove-orphans
# A party reports healthy once attached, which it can only do once enrolled.
start_timeout=${MPC_START_TIMEOUT:-180}
wait_healthy "$start_timeout" "${COORDINATORS[@]}"
enrol_parties "$start_timeout"
wait_healthy "$start_timeout" "${PARTIES[@]}"

s=$(any_running_coordinator)
read -r leader term < <(tool_in "$s" mpc-chaos leader --endpoints "$IN_NETWORK_ENDPOINTS")
echo "cluster up: leader coordinator-$leader, term $term"
for i in 1 2 3 4 5; do
  echo "  coordinator-$i  grpc $bind:$((50050 + i))  http http://$bind:$((8079 + i))"
done
for i in 1 2 3; do
  echo "  party-$i        http http://$bind:$((8090 + i))"
done
echo "admin credentials and signing keys: source $MPC_CLUSTER_DIR/admin.env"
echo "try: scripts/test-cluster.sh   logs: scripts/logs.sh [node]   stop: scripts/stop-cluster.sh [--clean]"
