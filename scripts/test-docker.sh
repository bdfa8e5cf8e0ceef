#!/usr/bin/env bash
# The docker part of the test suite (run by scripts/test.sh): builds the image, brings the
# compose cluster up on fresh volumes, checks every node and signs (scripts/test-cluster.sh),
# runs one short round of every chaos scenario, scans every container log and the chaos runs'
# output for the cluster's secrets (scripts/scan-secrets.sh: master keys, TLS and signing keys,
# tokens, share secrets), checks that data survives `down` and `up` (and scans again), and
# tears everything down. Without a Docker engine, a compose tool or python3 it skips, saying
# why; under CI (the variable CI set and not empty, as .ci/run sets it) it fails instead, so
# that a run which tested nothing never passes.
set -euo pipefail
source "$(dirname "$0")/lib/common.sh"
cd "$MPC_ROOT"

cannot_run() { # why
  if [[ -n ${CI:-} ]]; then
    echo "FAIL docker tests: $* (CI is set: the docker tests must run)" >&2
    exit 1
  fi
  echo "SKIP docker tests: $*"
  exit 0
}
if ! err=$(docker info 2>&1 >/dev/null); then
  cannot_run "no Docker engine answers (docker info: ${err:-docker not installed})"
fi
if ! docker compose version >/dev/null 2>&1 && ! command -v docker-compose >/dev/null 2>&1; then
  cannot_run "neither 'docker compose' nor 'docker-compose' is installed (scripts/install-deps.sh installs docker-compose)"
fi
# The cluster and chaos scripts read the nodes' JSON with it.
command -v python3 >/dev/null 2>&1 || cannot_run "python3 is not installed"
# A project of its own, so that a developer's cluster keeps its volumes.
export MPC_PROJECT=${MPC_TEST_PROJECT:-mpc-test}
export MPC_CLUSTER_DIR=${MPC_TEST_CLUSTER_DIR:-$MPC_ROOT/.cluster-test}
export MPC_CHAOS_ROUNDS=${MPC_CHAOS_ROUNDS:-1}
export MPC_CHAOS_RESULTS=${MPC_CHAOS_RESULTS:-$MPC_ROOT/chaos/results/test}
trap 'echo "== tear down"; scripts/stop-cluster.sh --clean >/dev/null 2>&1 || true' EXIT
step() { echo; echo "== $* ($(date +%T))"; }

step "image"
scripts/build-image.sh
scripts/stop-cluster.sh --clean >/dev/null 2>&1 || true

step "cluster up"
scripts/start-cluster.sh
step "cluster check"
scripts/test-cluster.sh

step "TLS from the host: the admin gets in, plain text and strangers do not"
(
  # shellcheck source=/dev/null
  source "$MPC_CLUSTER_DIR/admin.env"
  "$CARGO_TARGET_DIR/release/mpcctl" --output json whoami | grep -q '"principal":"client:admin"' \
    || { echo "FAIL: the admin's certificate was not taken over the published port" >&2; exit 1; }
  if "$CARGO_TARGET_DIR/release/mpcctl" --insecure-plaintext --timeout 3s cluster status >/dev/null 2>&1; then
    echo "FAIL: a plain-text client was answered" >&2; exit 1
  fi
  if env -u MPC_CLIENT_CERT -u MPC_CLIENT_KEY "$CARGO_TARGET_DIR/release/mpcctl" --token \
    mpc_0123456789abcdef_0000000000000000000000000000000000000000000000000000000000000000 \
    --timeout 3s cluster status >/dev/null 2>&1; then
    echo "FAIL: a forged token was answered" >&2; exit 1
  fi
  echo "admin over TLS: ok; plain text: refused; forged token: refused"
)

for scenario in leader-kill partition restart party-kill; do
  step "chaos: $scenario"
  "chaos/$scenario.sh"
done

step "secrets in the logs: container logs and chaos runs vs. the cluster's keys, tokens and shares"
scripts/scan-secrets.sh

step "data survives down and up"
before=$(mpcctl_in "$(any_running_coordinator)" --output json key list --limit 100000 | python3 -c 'import json,sys; print(len(json.load(sys.stdin)["keys"]))')
scripts/stop-cluster.sh
scripts/start-cluster.sh
after=$(mpcctl_in "$(any_running_coordinator)" --output json key list --limit 100000 | python3 -c 'import json,sys; print(len(json.load(sys.stdin)["keys"]))')
echo "keys before: $before, after: $after"
[[ $after -ge $before && $before -gt 0 ]] || { echo "FAIL: keys were lost across down/up" >&2; exit 1; }
scripts/test-cluster.sh --quick

step "secrets in the logs of the restarted cluster"
scripts/scan-secrets.sh

step "down -v deletes the data"
scripts/stop-cluster.sh --clean
left=$(docker volume ls -q --filter "label=com.docker.compose.project=$MPC_PROJECT")
[[ -z $left ]] || { echo "FAIL: volumes left after --clean: $left" >&2; exit 1; }
echo; echo "docker tests passed"
