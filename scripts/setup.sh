#!/usr/bin/env bash
# Installs every Debian package AIMLFW-LLMOps needs to build, test and fuzz.
# Idempotent: packages already present are skipped by apt; safe to run again.
set -euo pipefail

PKGS=(
  build-essential make pkg-config
  clang libclang-rt-14-dev          # libFuzzer + sanitizer runtimes
  libjansson-dev                    # JSON
  libyaml-dev                       # YAML configuration
  libsodium-dev                     # SHA-256 and other primitives
  libutf8proc-dev                   # Unicode categories, NFD, case mapping (tokenizers)
  python3 python3-numpy python3-torch  # independent reference implementations in tests
  python3-jinja2                    # the chat-template oracle in tests
  sqlite3 libsqlite3-dev            # SQLite with FTS5: the vector database's storage
  libopenblas-dev libopenblas0-pthread  # SGEMM for training (and PyTorch's BLAS in the benchmarks)
  openmpi-bin libopenmpi-dev        # data-parallel fine-tuning (mpirun)
  libcurl4-openssl-dev              # http(s):// and s3:// dataset sources
)

# s3rver (npm): a local S3 server for the s3:// dataset tests, which skip without it.
install_s3rver() {
  command -v s3rver >/dev/null 2>&1 && return 0
  if ! command -v npm >/dev/null 2>&1; then
    echo "setup: no npm, so no s3rver (the S3 tests will skip)"
    return 0
  fi
  local sudo=
  [ "$(id -u)" -ne 0 ] && sudo=sudo
  echo "setup: npm install -g s3rver"
  $sudo npm install -g s3rver@3 >/dev/null || echo "setup: s3rver install failed (the S3 tests will skip)"
}

missing=()
for p in "${PKGS[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done

if [ "${#missing[@]}" -eq 0 ]; then
  echo "setup: all ${#PKGS[@]} packages present"
  install_s3rver
  exit 0
fi

if [ "$(id -u)" -ne 0 ]; then SUDO=sudo; else SUDO=; fi
export DEBIAN_FRONTEND=noninteractive
echo "setup: installing ${missing[*]}"
$SUDO apt-get update -qq
$SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}"
install_s3rver
