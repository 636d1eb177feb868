#!/usr/bin/env bash
# Starts Convoy locally: builds the binaries (release) and the example image
# (convoy-testapp, a static binary FROM scratch: no registry needed), then
# runs `convoyd dev`, a coordinator plus an agent for this host. Ctrl-C stops
# both. Extra arguments go to `convoyd dev` (e.g. --data-dir, --api-listen).
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"

if ! command -v cargo >/dev/null; then
  echo "error: cargo is not installed (https://rustup.rs)" >&2
  exit 1
fi
if ! docker info >/dev/null 2>&1; then
  echo "error: the Docker Engine is unreachable; start it (Convoy's agent runs containers through it)" >&2
  exit 1
fi

# etcd-client (the etcd store backend) compiles etcd's .proto files with
# protoc; convoyd's allocator (jemalloc) is C built with cc and make.
missing=()
command -v protoc >/dev/null || missing+=(protobuf-compiler)
command -v make >/dev/null || missing+=(make)
command -v cc >/dev/null || missing+=(gcc)
if [ "${#missing[@]}" -gt 0 ]; then
  echo "installing ${missing[*]}" >&2
  sudo=""
  [ "$(id -u)" -ne 0 ] && sudo="sudo"
  $sudo apt-get update -q >/dev/null
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -q --no-install-recommends "${missing[@]}" >/dev/null
fi

cargo build --release --bins -p convoy-coordinator -p convoy-cli -p convoy-agent
bash scripts/build-test-image.sh >/dev/null
echo "example image convoy-testapp:latest is ready"
echo "CLI: $root/target/release/convoy (e.g. alias convoy=$root/target/release/convoy)"
exec "$root/target/release/convoyd" dev "$@"
