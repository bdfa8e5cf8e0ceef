#!/usr/bin/env bash
# The compose cluster with its monitoring profile (run by scripts/check-deploy.sh when a Docker
# engine answers and the mpc image exists): builds the Prometheus image if missing
# (deploy/prometheus/build-image.sh), brings the cluster up on fresh volumes in a project of
# its own with COMPOSE_PROFILES=monitoring (scripts/start-cluster.sh: PKI, enrolment, every
# node healthy), then asks Prometheus's API (published on loopback) until every coordinator and
# party is scraped with health "up", the rules are loaded and the cluster reports one leader;
# tears everything down (down -v) on the way out. Bounded: MPC_MONITORING_TIMEOUT (default
# 180 s) for the start, 60 s more for the scrapes.
set -euo pipefail
source "$(dirname "$0")/lib/common.sh"
cd "$MPC_ROOT"

if ! err=$(docker info 2>&1 >/dev/null); then
  echo "SKIP monitoring test: no Docker engine answers (docker info: ${err:-docker not installed})"
  exit 0
fi
# A project and cluster directory of its own, so that a developer's cluster keeps its volumes.
export MPC_PROJECT=${MPC_MONITORING_PROJECT:-mpc-monitoring}
# Outside the work tree (nothing to ignore in git); deleted on the way out.
export MPC_CLUSTER_DIR=${MPC_MONITORING_CLUSTER_DIR:-$HOME/.cache/mpc/cluster-monitoring}
export COMPOSE_PROFILES=monitoring
export MPC_START_TIMEOUT=${MPC_MONITORING_TIMEOUT:-180}
# No ECDSA key is made here: no safe primes either, which keeps the test light on the CPU.
export MPC_PRIME_POOL=${MPC_PRIME_POOL:-0}
PROM_IMAGE=${MPC_PROMETHEUS_IMAGE:-mpc-prometheus:latest}
bind=$(sed -n 's/^MPC_BIND=//p' .env 2>/dev/null | tail -n1); bind=${MPC_BIND:-${bind:-127.0.0.1}}
API=http://${bind/#0.0.0.0/127.0.0.1}:${MPC_PROMETHEUS_PORT:-9090}/api/v1
step() { echo; echo "== monitoring: $* ($(date +%T))"; }

if ! docker image inspect "$(image_name)" >/dev/null 2>&1; then
  echo "test-monitoring: the image $(image_name) does not exist; scripts/build-image.sh makes it" >&2
  exit 1
fi
if ! docker image inspect "$PROM_IMAGE" >/dev/null 2>&1; then
  step "Prometheus image"
  # Cheap (files copied, nothing compiled), but it is a docker build: take the machine's build
  # lock when it comes free within 10 minutes, and build anyway after that.
  if command -v flock >/dev/null 2>&1 && flock -w 600 -o /tmp/mpc-cargo.lock deploy/prometheus/build-image.sh; then
    :
  else
    docker image inspect "$PROM_IMAGE" >/dev/null 2>&1 || deploy/prometheus/build-image.sh
  fi
fi

teardown() {
  echo "== monitoring: tear down"
  compose down -v --remove-orphans >/dev/null 2>&1 || true
  scripts/stop-cluster.sh --clean >/dev/null 2>&1 || true
}
trap teardown EXIT
scripts/stop-cluster.sh --clean >/dev/null 2>&1 || true

step "cluster and Prometheus up (project $MPC_PROJECT, profile monitoring)"
scripts/start-cluster.sh
[[ -n $(container_of prometheus) ]] || { echo "FAIL: no prometheus container: the monitoring profile did not start it" >&2; exit 1; }

# Small readers of Prometheus's JSON answers (stdin).
TARGETS_PY='
import json, sys
for t in json.load(sys.stdin)["data"]["activeTargets"]:
    print(t["labels"]["job"], t["labels"]["instance"], t["health"], t.get("lastError", ""))
'
RULES_PY='
import json, sys
groups = json.load(sys.stdin)["data"]["groups"]
rules = [r for g in groups for r in g["rules"]]
alerts = sorted(r["name"] for r in rules if r["type"] == "alerting")
bad = [r["name"] for r in rules if r.get("health") not in ("ok", "unknown")]
print("  %d rule groups, %d rules; alerts: %s" % (len(groups), len(rules), " ".join(alerts)))
if not alerts or bad:
    sys.exit("FAIL: no alert loaded, or rules failing: %s" % bad)
'
SCALAR_PY='
import json, sys
r = json.load(sys.stdin)["data"]["result"]
print(int(float(r[0]["value"][1])) if r else 0)
'
query() { curl -fsS --max-time 3 "$API/query" --data-urlencode "query=$1" | python3 -c "$SCALAR_PY"; }

step "every node scraped ($API/targets)"
expected=$(printf '%s:8080\n' "${COORDINATORS[@]}" "${PARTIES[@]}" | sort | tr '\n' ' ')
deadline=$((SECONDS + 60))
report=""
while :; do
  # job, instance, health and last error of each active target; empty while Prometheus starts.
  report=$(curl -fsS --max-time 3 "$API/targets?state=active" 2>/dev/null | python3 -c "$TARGETS_PY" 2>/dev/null) || report=""
  up=$(awk '$3 == "up" {print $2}' <<<"$report" | sort | tr '\n' ' ')
  [[ $up == "$expected" ]] && break
  if ((SECONDS >= deadline)); then
    echo "FAIL: not every node is scraped after 60 s; expected up: $expected" >&2
    echo "${report:-no answer from the Prometheus API}" >&2
    compose logs --tail 20 prometheus >&2 || true
    exit 1
  fi
  sleep 2
done
echo "$report" | awk '{printf "  %-12s %-20s %s\n", $1, $2, $3}'

step "rules loaded, the cluster seen through its metrics"
curl -fsS --max-time 3 "$API/rules" | python3 -c "$RULES_PY"
# Samples arrive every 5 s: give the leader's gauge a moment to be scraped everywhere.
deadline=$((SECONDS + 30))
until leaders=$(query 'sum(mpc_raft_is_leader{job="coordinator"})') && [[ $leaders == 1 ]]; do
  if ((SECONDS >= deadline)); then echo "FAIL: sum(mpc_raft_is_leader) is ${leaders:-?}, not 1" >&2; exit 1; fi
  sleep 2
done
# A party attaches after its first leader lookup and is seen at the next scrape: wait for both.
deadline=$((SECONDS + 60))
until attached=$(query 'sum(mpc_party_connected{job="party"})') && [[ $attached == 3 ]]; do
  if ((SECONDS >= deadline)); then echo "FAIL: mpc_party_connected sums to ${attached:-?}, not 3 after 60 s" >&2; exit 1; fi
  sleep 2
done
echo "  leaders: $leaders; parties attached: $attached"
echo; echo "monitoring test passed: every node scraped, rules loaded"
