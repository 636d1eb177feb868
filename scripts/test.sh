#!/usr/bin/env bash
# The project's test command (README, CI): format, lints, build, the test
# image, then every unit and end-to-end test against the real Docker Engine.
#
# On a fresh Debian machine it installs what is missing (C toolchain, docker
# CLI, curl, rustfmt and clippy for the installed toolchain); the Docker daemon is
# assumed to be running. CONVOY_SKIP_DOCKER_TESTS=1 skips the Docker tests.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"

step() { printf '\n==> %s\n' "$*" >&2; }

apt_missing=()
need() { command -v "$1" >/dev/null 2>&1 || apt_missing+=("$2"); }
need cc build-essential
need make build-essential
need pkg-config pkg-config
need git git
need curl curl
need sha256sum coreutils
need docker docker.io
need openssl openssl
# Issue 20's TLS test: curl as the client of the proxy's TLS listener; its
# zero-downtime test counts failures with wrk too.
need curl curl
need wrk wrk
# Issue 4's end-to-end tests: a real Prometheus (and promtool) scraping
# /metrics, and the dashboard in a real headless browser over WebDriver.
need prometheus prometheus
need promtool prometheus
need chromium chromium
need chromedriver chromium-driver
# Issue 14's private-registry test: a real registry with htpasswd (bcrypt).
need docker-registry docker-registry
need htpasswd apache2-utils
# Issue 17's Swarm tests: two extra dockerd engines (tests/src/swarm.rs),
# which store images with fuse-overlayfs where overlay2 cannot run, and
# make their bridges with ip(8).
need fuse-overlayfs fuse-overlayfs
need ip iproute2
# etcd-client (issue 18) compiles etcd's .proto files with protoc.
need protoc protobuf-compiler
# Issue 18's tests: real etcd members (and etcdctl to read a key's history).
need etcd etcd-server
need etcdctl etcd-client
# Issue 19's package test: cargo-deb reads the binaries' library needs
# with dpkg-shlibdeps.
need dpkg-shlibdeps dpkg-dev
if [ "${#apt_missing[@]}" -gt 0 ]; then
  step "installing ${apt_missing[*]}"
  sudo=""
  [ "$(id -u)" -ne 0 ] && sudo="sudo"
  $sudo apt-get update
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y --no-install-recommends ca-certificates fonts-dejavu-core "${apt_missing[@]}"
fi

if ! command -v cargo >/dev/null 2>&1 && [ -x "$HOME/.cargo/bin/cargo" ]; then
  export PATH="$HOME/.cargo/bin:$PATH"
fi
if ! command -v cargo >/dev/null 2>&1; then
  echo "error: no Rust toolchain (cargo) found; install one with rustup first" >&2
  exit 1
fi
if ! cargo fmt --version >/dev/null 2>&1 || ! cargo clippy --version >/dev/null 2>&1; then
  step "installing rustfmt and clippy"
  rustup component add rustfmt clippy
fi

# Issue 19's package test builds the agent's .deb with cargo-deb, pinned
# where scripts/package.sh pins it.
cargo_deb_version="$(sed -n 's/^cargo_deb_version=//p' scripts/package.sh)"
if ! cargo deb --version 2>/dev/null | grep -qF "$cargo_deb_version"; then
  step "installing cargo-deb $cargo_deb_version"
  cargo install cargo-deb --version "$cargo_deb_version" --locked
fi

if [ "${CONVOY_SKIP_DOCKER_TESTS:-}" != 1 ] && ! docker info >/dev/null 2>&1; then
  echo "error: the Docker Engine is unreachable (the end-to-end tests need it); start it, or set CONVOY_SKIP_DOCKER_TESTS=1" >&2
  exit 1
fi

started=$SECONDS
step "cargo fmt --check"
cargo fmt --all -- --check

step "cargo clippy"
cargo clippy --workspace --all-targets -- -D warnings

step "cargo build"
cargo build --workspace --all-targets

if [ "${CONVOY_SKIP_DOCKER_TESTS:-}" != 1 ]; then
  step "test image"
  bash scripts/build-test-image.sh
  # The real-systemd tests boot it (docs/systemd-in-docker.md); built once
  # and cached by tag, about a minute the first time.
  step "systemd image"
  bash scripts/build-systemd-image.sh
fi

step "cargo test"
# The end-to-end tests run many processes and containers each; two at a time
# keep a two-core machine responsive. Override with RUST_TEST_THREADS.
log="$(mktemp)"
trap 'rm -f "$log"' EXIT
set +e
RUST_TEST_THREADS="${RUST_TEST_THREADS:-2}" cargo test --workspace 2>&1 | tee "$log"
status=${PIPESTATUS[0]}
set -e
read -r passed failed <<<"$(awk '/^test result:/ { p += $4; f += $6 } END { print p + 0, f + 0 }' "$log")"
step "tests done in $((SECONDS - started)) s"
# One closing line over every test binary (cargo prints one per binary).
echo "tests: $passed passed, $failed failed"
exit "$status"
