#!/usr/bin/env bash
# Checks the deployment files (run by scripts/test.sh; safe to run twice):
#   1. every Kubernetes manifest of deploy/k8s, as its kustomization renders it, against the
#      Kubernetes schemas (kubernetes-validate from PyPI, offline: the schemas ship with it;
#      no kubectl needed), strictly (unknown fields fail);
#   2. scripts/check_deploy.py: compose and the manifests name the same images, commands,
#      ports, settings, probes and mounts; the manifests' security settings; Prometheus
#      scrapes exactly compose's nodes; the rules and the dashboard name only metrics the
#      code exports (or say they are not exported yet);
#   3. promtool check config / check rules / test rules on deploy/prometheus (promtool from
#      Debian's prometheus package, installed through apt when missing);
#   4. scripts/test-monitoring.sh (the compose cluster with --profile monitoring, every node
#      scraped), only when a Docker engine answers and the mpc image exists; otherwise it says
#      why it skipped (under CI, with CI set, it fails instead). MPC_SKIP_MONITORING_TEST=1
#      skips it.
# The Python tools live in a venv beside the build cache: ~/.cache/mpc/venv (MPC_VENV).
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
VENV=${MPC_VENV:-$HOME/.cache/mpc/venv}
KUBE_VERSION=${MPC_KUBE_VERSION:-1.31.0}   # the oldest Kubernetes the manifests need (ordinals.start, pod-index label)
step() { echo; echo "== check-deploy: $*"; }

step "python venv ($VENV)"
if [[ ! -x $VENV/bin/python ]]; then
  if ! python3 -m venv "$VENV" 2>/dev/null; then
    rm -rf "$VENV"
    echo "python3 -m venv failed: installing python3-venv"
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends python3-venv >/dev/null
    python3 -m venv "$VENV"
  fi
fi
if ! "$VENV/bin/python" -c 'import yaml, kubernetes_validate' 2>/dev/null; then
  "$VENV/bin/pip" install -q --disable-pip-version-check kubernetes-validate pyyaml
fi
echo "kubernetes-validate $("$VENV/bin/pip" show kubernetes-validate 2>/dev/null | sed -n 's/^Version: //p'), PyYAML $("$VENV/bin/python" -c 'import yaml; print(yaml.__version__)')"

if ! command -v promtool >/dev/null 2>&1; then
  step "installing promtool (Debian's prometheus package)"
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends prometheus >/dev/null
fi

TMP=$(mktemp -d)
trap 'rm -rf "$TMP"' EXIT

step "compose vs manifests vs monitoring (scripts/check_deploy.py)"
"$VENV/bin/python" scripts/check_deploy.py --render "$TMP/k8s.yaml"

step "Kubernetes schemas ($KUBE_VERSION, strict): deploy/k8s as kustomization.yaml renders it"
"$VENV/bin/kubernetes-validate" --strict -k "$KUBE_VERSION" "$TMP/k8s.yaml"
# The files as written too (the rendering only adds a namespace and labels).
manifests=()
for f in deploy/k8s/*.yaml; do [[ $f == */kustomization.yaml ]] || manifests+=("$f"); done
"$VENV/bin/kubernetes-validate" --strict --quiet -k "$KUBE_VERSION" "${manifests[@]}"
echo "every manifest file of deploy/k8s is valid for Kubernetes $KUBE_VERSION"

step "Prometheus configuration and rules (promtool $(promtool --version 2>&1 | sed -n '1s/^promtool, version \([^ ]*\).*/\1/p'))"
# The compose configuration names the rules where the container mounts them: check a copy
# that names them where they are here.
sed "s#/etc/prometheus/rules/#$ROOT/deploy/prometheus/rules/#" deploy/prometheus/prometheus.yml >"$TMP/prometheus.yml"
promtool check config "$TMP/prometheus.yml"
promtool check rules deploy/prometheus/rules/*.yml
# Unit tests: each alert fires on a series that should fire it, and not on a healthy one.
(cd deploy/prometheus && promtool test rules tests/*.yml)

step "compose with --profile monitoring: every node scraped"
# Under CI (CI set, as .ci/run sets it) a test that cannot run fails instead of skipping.
cannot_run() {
  if [[ -n ${CI:-} ]]; then echo "FAIL monitoring test: $* (CI is set: it must run)" >&2; exit 1; fi
  echo "SKIP monitoring test: $*"
}
if [[ ${MPC_SKIP_MONITORING_TEST:-0} == 1 ]]; then
  echo "SKIP monitoring test: MPC_SKIP_MONITORING_TEST=1"
elif ! err=$(docker info 2>&1 >/dev/null); then
  cannot_run "no Docker engine answers (docker info: ${err:-docker not installed})"
elif ! docker image inspect "${MPC_IMAGE:-mpc:latest}" >/dev/null 2>&1; then
  cannot_run "the image ${MPC_IMAGE:-mpc:latest} does not exist (scripts/build-image.sh makes it; scripts/test-docker.sh runs it first)"
else
  scripts/test-monitoring.sh
fi
echo; echo "check-deploy: passed"
