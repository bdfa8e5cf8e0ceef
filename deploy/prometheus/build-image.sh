#!/usr/bin/env bash
# Builds mpc-prometheus:latest (deploy/prometheus/Dockerfile) with no registry: Debian's
# `prometheus` package (installed here through apt when missing), its binaries and the shared
# libraries ldd finds for them, a passwd entry for the image's user (10001, as the mpc image)
# and an empty data directory, on `FROM scratch`. Safe to run twice; quick (no compilation).
set -euo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
source "$HERE/../../scripts/lib/rootfs.sh"
IMAGE=${MPC_PROMETHEUS_IMAGE:-mpc-prometheus:latest}
CONTEXT=${CARGO_TARGET_DIR:-$HOME/.cache/mpc/target}/prometheus-image-context

docker info >/dev/null 2>&1 || { echo "prometheus image: no Docker engine answers" >&2; exit 1; }
if [[ ! -x /usr/bin/prometheus ]]; then
  echo "prometheus image: installing Debian's prometheus package"
  [[ $(id -u) == 0 ]] || { echo "prometheus image: needs root to apt-get install prometheus" >&2; exit 1; }
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends prometheus >/dev/null
fi

rm -rf "$CONTEXT"
ROOTFS=$CONTEXT/rootfs
mkdir -p "$ROOTFS/usr/bin" "$ROOTFS/etc/prometheus/rules" "$ROOTFS/tmp" "$CONTEXT/data"
chmod 1777 "$ROOTFS/tmp"
for b in prometheus promtool; do
  cp -L "/usr/bin/$b" "$ROOTFS/usr/bin/$b"
done
copy_shared_libraries "$ROOTFS" /usr/bin/prometheus /usr/bin/promtool
# The web pages' static files, where the package has them (the API needs none).
[[ -d /usr/share/prometheus ]] && mkdir -p "$ROOTFS/usr/share" && cp -a /usr/share/prometheus "$ROOTFS/usr/share/"
cat >"$ROOTFS/etc/passwd" <<PASSWD
root:x:0:0:root:/root:/usr/sbin/nologin
prometheus:x:10001:10001:prometheus:/prometheus:/usr/sbin/nologin
PASSWD
printf 'root:x:0:\nprometheus:x:10001:\n' >"$ROOTFS/etc/group"
echo 'hosts: files dns' >"$ROOTFS/etc/nsswitch.conf"
# A configuration to start with when none is mounted: Prometheus scraping itself.
cat >"$ROOTFS/etc/prometheus/prometheus.yml" <<'CONFIG'
scrape_configs:
  - job_name: prometheus
    static_configs: [{targets: ["127.0.0.1:9090"]}]
CONFIG
cp "$HERE/Dockerfile" "$CONTEXT/Dockerfile"

version=$(/usr/bin/prometheus --version 2>&1 | sed -n 's/^prometheus, version \([^ ]*\).*/\1/p')
if ! out=$(DOCKER_BUILDKIT=0 docker build -q --label "org.opencontainers.image.version=$version" \
  -t "$IMAGE" "$CONTEXT" 2>&1); then
  echo "$out" >&2
  exit 1
fi
echo "built $IMAGE (Debian prometheus $version, $(($(docker image inspect -f '{{.Size}}' "$IMAGE") / 1024 / 1024)) MiB)"
