#!/usr/bin/env bash
# System packages the build, the tests and the benchmarks need, installed only when missing.
# Safe to run any number of times.
set -euo pipefail
PACKAGES=(
  build-essential   # RocksDB's C++ sources
  clang libclang-dev  # bindgen for librocksdb-sys
  m4 pkg-config curl ca-certificates
  binutils  # strip, for the image
  etcd-server etcd-client python3  # the comparison in scripts/bench-raft.sh
  python3-venv      # the DVN devnet's chains and contracts (scripts/dvn-devnet.sh)
  softhsm2          # the DVN relayers' HSM signers (PKCS#11) in tests, the local cluster and images
  faketime          # libfaketime: a coordinator with its clock off (tests/tests/it/clock_skew.rs)
)
missing=()
for p in "${PACKAGES[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if ((${#missing[@]})); then
  echo "installing: ${missing[*]}"
  SUDO=(); ((EUID == 0)) || SUDO=(sudo)
  "${SUDO[@]}" apt-get update -qq
  DEBIAN_FRONTEND=noninteractive "${SUDO[@]}" apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi
# The docker tests need a compose tool beside the engine (Debian's docker-compose works).
if command -v docker >/dev/null 2>&1 && ! docker compose version >/dev/null 2>&1 \
  && ! command -v docker-compose >/dev/null 2>&1; then
  echo "installing: docker-compose"
  SUDO=(); ((EUID == 0)) || SUDO=(sudo)
  "${SUDO[@]}" apt-get update -qq
  DEBIAN_FRONTEND=noninteractive "${SUDO[@]}" apt-get install -y -qq --no-install-recommends docker-compose >/dev/null
fi
if ! cargo nextest --version >/dev/null 2>&1; then
  echo "installing cargo-nextest"
  cargo install --locked cargo-nextest
fi
# deny.toml's format follows cargo-deny's minor version: keep the two in step.
if ! cargo deny --version >/dev/null 2>&1; then
  echo "installing cargo-deny"
  cargo install --locked cargo-deny --version '~0.20'
fi
