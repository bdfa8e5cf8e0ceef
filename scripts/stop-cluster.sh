#!/usr/bin/env bash
# Stops the docker-compose cluster. Data stays in the named volumes unless --clean is given.
#   scripts/stop-cluster.sh           stop and remove the containers, keep the data
#   scripts/stop-cluster.sh --clean   also delete every node's volume (all keys are lost)
set -euo pipefail
source "$(dirname "$0")/lib/common.sh"
cd "$MPC_ROOT"
have_docker || { echo "stop-cluster: no Docker engine answers (docker info failed)" >&2; exit 1; }
# A partition scenario that stopped half-way leaves its side network behind.
for net in $(docker network ls -q --filter "label=mpc.chaos=${MPC_PROJECT}"); do
  for c in $(docker network inspect -f '{{range $id, $_ := .Containers}}{{$id}} {{end}}' "$net"); do
    docker network disconnect -f "$net" "$c" >/dev/null 2>&1 || true
  done
  docker network rm "$net" >/dev/null 2>&1 || true
done
if [[ ${1:-} == --clean ]]; then
  compose down -v --remove-orphans
  # The node secrets belong to the image's user: remove them the same way.
  if [[ -d $MPC_CLUSTER_DIR/secrets ]]; then
    docker run --rm -u 0 -v "$MPC_CLUSTER_DIR:/cluster" "$(image_name)" \
      mpcctl pki set-owner --dir /cluster/secrets --uid "$(id -u)" --gid "$(id -g)" >/dev/null 2>&1 || true
  fi
  rm -rf "$MPC_CLUSTER_DIR"
  echo "cluster stopped; volumes and secrets deleted"
else
  compose down --remove-orphans
  echo "cluster stopped; data kept in the volumes (--clean deletes it)"
fi
