#!/usr/bin/env bash
# Builds the image mpc:<version> and mpc:latest without any registry: the release binaries
# plus exactly the shared libraries they load (found with ldd), a passwd entry for the
# unprivileged user and an empty data directory, on `FROM scratch` (which pulls nothing).
# The image is a few tens of MB; the conventional multi-stage Dockerfile at the root builds
# the same binaries for sites that can pull base images.
#   scripts/build-image.sh              cargo build --release, then the image
#   scripts/build-image.sh --no-build   the image from the binaries already built
set -euo pipefail
source "$(dirname "$0")/lib/common.sh"
source "$(dirname "$0")/lib/rootfs.sh"
cd "$MPC_ROOT"

# Keep in step with the Dockerfile (tests/tests/it/image.rs checks). mpc-dvn loads PKCS#11
# modules with dlopen at run time, so ldd finds none and the image carries none: on
# Kubernetes the platform signer (`[signer] kind = "platform"`) is the default, and an
# operator who wants an HSM mounts the vendor's module into the pod (deploy/k8s/dvn.yaml).
BINARIES=(mpc-coordinator mpc-party mpcctl mpc-chaos mpc-dvn)
IMAGE=${MPC_IMAGE_NAME:-mpc}
VERSION=$(sed -n 's/^version = "\(.*\)"$/\1/p' Cargo.toml | head -n1)
REVISION=$(git rev-parse --short HEAD 2>/dev/null || echo unknown)
UID_MPC=10001

if ! have_docker; then
  echo "build-image: no Docker engine answers (docker info failed)" >&2
  exit 1
fi
if [[ ${1:-} != --no-build ]]; then
  cargo build --release --locked $(printf -- '--bin %s ' "${BINARIES[@]}")
fi

CONTEXT=$CARGO_TARGET_DIR/image-context
rm -rf "$CONTEXT"
ROOTFS=$CONTEXT/rootfs
mkdir -p "$ROOTFS/usr/local/bin" "$ROOTFS/etc" "$ROOTFS/tmp" "$CONTEXT/data"
chmod 1777 "$ROOTFS/tmp"

for b in "${BINARIES[@]}"; do
  src=$CARGO_TARGET_DIR/release/$b
  [[ -x $src ]] || { echo "build-image: $src is missing; run without --no-build" >&2; exit 1; }
  # Line tables are for profiling on the build host; the image ships without them.
  strip --strip-unneeded -o "$ROOTFS/usr/local/bin/$b" "$src"
done
copy_shared_libraries "$ROOTFS" "${BINARIES[@]/#/$CARGO_TARGET_DIR/release/}"

cat >"$ROOTFS/etc/passwd" <<PASSWD
root:x:0:0:root:/root:/usr/sbin/nologin
mpc:x:$UID_MPC:$UID_MPC:mpc:/var/lib/mpc:/usr/sbin/nologin
PASSWD
cat >"$ROOTFS/etc/group" <<GROUP
root:x:0:
mpc:x:$UID_MPC:
GROUP
echo 'hosts: files dns' >"$ROOTFS/etc/nsswitch.conf"

cat >"$CONTEXT/Dockerfile" <<DOCKERFILE
FROM scratch
COPY rootfs/ /
COPY --chown=$UID_MPC:$UID_MPC data/ /var/lib/mpc/
ENV PATH=/usr/local/bin MPC_DATA_DIR=/var/lib/mpc
USER $UID_MPC:$UID_MPC
WORKDIR /var/lib/mpc
VOLUME ["/var/lib/mpc"]
EXPOSE 50051 8080
# Every role serves /health on 8080 inside the container; compose asks /ready instead.
HEALTHCHECK --interval=5s --timeout=3s --start-period=20s --retries=3 \\
  CMD ["mpcctl", "--timeout", "2s", "probe", "http://127.0.0.1:8080/health"]
LABEL org.opencontainers.image.title="mpc" \\
      org.opencontainers.image.version="$VERSION" \\
      org.opencontainers.image.revision="$REVISION"
CMD ["mpc-coordinator"]
DOCKERFILE

# The classic builder: FROM scratch needs nothing pulled, and no buildx plugin is required.
if ! out=$(DOCKER_BUILDKIT=0 docker build -q -t "$IMAGE:$VERSION" -t "$IMAGE:latest" "$CONTEXT" 2>&1); then
  echo "$out" >&2
  exit 1
fi
size=$(docker image inspect -f '{{.Size}}' "$IMAGE:latest")
echo "built $IMAGE:$VERSION and $IMAGE:latest ($((size / 1024 / 1024)) MiB, revision $REVISION): ${BINARIES[*]}"
echo "libraries: $(printf '%s\n' "${SHARED_LIBRARIES[@]}" | xargs -n1 basename | tr '\n' ' ')"
