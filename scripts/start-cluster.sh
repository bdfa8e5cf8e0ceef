#!/usr/bin/env bash
# Starts the docker-compose cluster: five coordinators and three parties.
#   scripts/start-cluster.sh           build the image if there is none, up, wait until healthy
#   scripts/start-cluster.sh --build   rebuild the image first (after code changes)
# On first use it writes .env from .env.example with a fresh master key per party.
set -euo pipefail
source "$(dirname "$0")/lib/common.sh"
cd "$MPC_ROOT"

have_docker || { echo "start-cluster: no Docker engine answers (docker info failed)" >&2; exit 1; }

if [[ ! -f .env ]]; then
  (
    umask 077
    cp .env.example .env
    for p in 1 2 3; do
      key=$(head -c 32 /dev/urandom | od -An -tx1 | tr -d ' \n')
      sed -i "s/^MPC_PARTY_${p}_MASTER_KEY=.*/MPC_PARTY_${p}_MASTER_KEY=$key/" .env
    done
  )
  echo "wrote .env with fresh party master keys (keep it safe: without them the shares are lost)"
fi

image=$(sed -n 's/^MPC_IMAGE=//p' .env | tail -n1)
image=${MPC_IMAGE:-${image:-mpc:latest}}
if [[ ${1:-} == --build ]] || ! docker image inspect "$image" >/dev/null 2>&1; then
  scripts/build-image.sh
fi

compose up -d --remove-orphans
wait_healthy "${MPC_START_TIMEOUT:-180}" "${COORDINATORS[@]}" "${PARTIES[@]}"

s=$(any_running_coordinator)
read -r leader term < <(docker exec "$(container_of "$s")" mpc-chaos leader --endpoints "$IN_NETWORK_ENDPOINTS")
bind=$(sed -n 's/^MPC_BIND=//p' .env | tail -n1); bind=${bind:-127.0.0.1}
echo "cluster up: leader coordinator-$leader, term $term"
for i in 1 2 3 4 5; do
  echo "  coordinator-$i  grpc $bind:$((50050 + i))  http http://$bind:$((8079 + i))"
done
for i in 1 2 3; do
  echo "  party-$i        http http://$bind:$((8090 + i))"
done
echo "try: scripts/test-cluster.sh   logs: scripts/logs.sh [node]   stop: scripts/stop-cluster.sh [--clean]"
