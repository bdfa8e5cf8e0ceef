# The conventional build, for sites that can pull base images. Without a registry use
# scripts/build-image.sh, which packs the same binaries (tests/tests/it/image.rs keeps the
# two lists equal) onto an empty base.
#   docker build -t mpc:latest .
ARG RUST_VERSION=1.95

FROM rust:${RUST_VERSION}-bookworm AS build
RUN apt-get update \
 && apt-get install -y --no-install-recommends clang libclang-dev m4 \
 && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY . .
# mpc-dvn loads PKCS#11 modules with dlopen at run time and this image installs none: the
# platform signer is the default (deploy/k8s/dvn.yaml); for an HSM, mount its module.
RUN cargo build --release --locked \
      --bin mpc-coordinator --bin mpc-party --bin mpcctl --bin mpc-chaos --bin mpc-dvn \
 && mkdir /out \
 && for b in mpc-coordinator mpc-party mpcctl mpc-chaos mpc-dvn; do \
      strip --strip-unneeded -o /out/$b target/release/$b; \
    done

FROM debian:bookworm-slim
RUN groupadd --gid 10001 mpc \
 && useradd --uid 10001 --gid 10001 --home-dir /var/lib/mpc --shell /usr/sbin/nologin mpc \
 && install -d -o mpc -g mpc /var/lib/mpc
COPY --from=build /out/ /usr/local/bin/
ENV MPC_DATA_DIR=/var/lib/mpc
USER 10001:10001
WORKDIR /var/lib/mpc
VOLUME ["/var/lib/mpc"]
EXPOSE 50051 8080
HEALTHCHECK --interval=5s --timeout=3s --start-period=20s --retries=3 \
  CMD ["mpcctl", "--timeout", "2s", "probe", "http://127.0.0.1:8080/health"]
CMD ["mpc-coordinator"]
