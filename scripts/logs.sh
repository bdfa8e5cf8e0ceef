#!/usr/bin/env bash
# Logs of the docker-compose cluster.
#   scripts/logs.sh                 every node, following
#   scripts/logs.sh coordinator-2   one node (also: party-1, ...); extra args go to compose logs
set -euo pipefail
source "$(dirname "$0")/lib/common.sh"
cd "$MPC_ROOT"
if [[ $# -gt 0 && $1 != -* ]]; then
  node=$1; shift
  exec_args=("$@"); [[ ${#exec_args[@]} -gt 0 ]] || exec_args=(-f --tail 200)
  compose logs "${exec_args[@]}" "$node"
else
  exec_args=("$@"); [[ ${#exec_args[@]} -gt 0 ]] || exec_args=(-f --tail 50)
  compose logs "${exec_args[@]}"
fi
