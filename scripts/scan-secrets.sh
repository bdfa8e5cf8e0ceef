#!/usr/bin/env bash
# Scans every log of the compose cluster and of the chaos runs for the cluster's secrets, and
# fails on any hit (scripts/test-docker.sh runs it after the chaos scenarios and again before
# tearing down). What is searched for:
#   - every file of the cluster directory ($MPC_CLUSTER_DIR, .cluster) that holds a secret:
#     the PKI's and the nodes' TLS private keys (PEM: the key, its DER and its PEM lines), the
#     parties' master keys, the admin's and initiator's signing keys, any token or PIN files;
#   - the identity keys and the secret share of every key in each party's data volume, opened
#     read-only with the party's master key.
# Where: the logs of every container of the project (`compose logs --no-color`, saved first
# to <results>/secret-scan-<time>/compose.log), and everything the chaos runs wrote under the
# results directory ($MPC_CHAOS_RESULTS, default chaos/results: load logs, histories,
# reports), plus any files or directories given as arguments.
# Each hit prints as `<file>:<line>: holds <label> (<encoding>)`, never the secret.
#   scripts/scan-secrets.sh [more logs...]
# The scan runs in a throwaway container of the local image (nothing is pulled), as root so
# that it can read the nodes' secret files, with no network; the scanner binary
# (mpc-secret-scan, built by `cargo build --bins`), the cluster directory, the party volumes
# and the logs are mounted read-only.
set -euo pipefail
source "$(dirname "$0")/lib/common.sh"
cd "$MPC_ROOT"
have_docker || { echo "scan-secrets: no Docker engine answers (docker info failed)" >&2; exit 1; }
[[ -d $MPC_CLUSTER_DIR ]] || { echo "scan-secrets: no cluster directory $MPC_CLUSTER_DIR" >&2; exit 1; }

scanner=$CARGO_TARGET_DIR/release/mpc-secret-scan
[[ -x $scanner ]] || cargo build --release --locked -p mpc-tests --bin mpc-secret-scan

results=${MPC_CHAOS_RESULTS:-$MPC_ROOT/chaos/results}
out=$results/secret-scan-$(date +%Y%m%dT%H%M%S)
mkdir -p "$out"
compose logs --no-color >"$out/compose.log" 2>&1
echo "saved the logs of every container of project $MPC_PROJECT: $out/compose.log ($(wc -l <"$out/compose.log") lines)"

mounts=(-v "$scanner:/usr/local/bin/mpc-secret-scan:ro" -v "$MPC_CLUSTER_DIR:/cluster:ro" -v "$results:/logs/results:ro")
args=(--secrets-dir /cluster)
echo "secrets: every secret file under $MPC_CLUSTER_DIR (mounted at /cluster)"
for p in "${PARTIES[@]}"; do
  vol=$(docker volume ls -q --filter "label=com.docker.compose.project=$MPC_PROJECT" \
    --filter "label=com.docker.compose.volume=$p")
  [[ -n $vol ]] || { echo "scan-secrets: $p has no data volume in project $MPC_PROJECT" >&2; exit 1; }
  mounts+=(-v "$vol:/parties/$p:ro")
  args+=(--party "$p" "/parties/$p" "/cluster/secrets/$p/master.key")
  echo "secrets: identity keys and key share secrets of $p (volume $vol, at /parties/$p)"
done
echo "logs: $results (at /logs/results), the container logs included"
args+=(/logs/results)
i=0
for extra in "$@"; do
  i=$((i + 1))
  mounts+=(-v "$(realpath "$extra"):/logs/extra-$i:ro")
  args+=("/logs/extra-$i")
  echo "logs: $extra (at /logs/extra-$i)"
done

if docker run --rm --network none -u 0 "${mounts[@]}" --entrypoint /usr/local/bin/mpc-secret-scan \
  "$(image_name)" "${args[@]}"; then
  echo "secret scan passed"
else
  code=$?
  if ((code == 1)); then
    echo "FAIL: secrets found in the logs (above; paths under /logs/results are in $results)" >&2
  else
    echo "FAIL: the secret scan could not run (exit $code)" >&2
  fi
  exit 1
fi
