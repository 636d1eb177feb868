#!/usr/bin/env bash
# Builds the .deb packages of convoyd, convoy-agent and convoy into
# target/debian/ (docs/PACKAGES.md): the release binaries, then each binary's
# shell completions and man pages (`BIN generate-docs`) and the packaged
# systemd units (systemd/*.service with the binaries in /usr/bin), then
# `cargo deb` per package with the metadata in each crate's Cargo.toml.
#
# Installs cargo-deb (pinned) with `cargo install --locked` when it is missing.
#
# Env:
#   CONVOY_PACKAGE_PROFILE   cargo profile (default release; the e2e test
#                            packages its dev build: dev)
#   CONVOY_PACKAGE_NO_BUILD  1: use the binaries already built
#   CONVOY_PACKAGE_ONLY      space-separated subset of: convoyd convoy-agent convoy
#   CONVOY_PACKAGE_OUT       output directory (default target/debian)
#   CONVOY_PACKAGE_FAST      1: faster, larger compression
# Prints the path of each .deb on stdout, one a line.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"

# 3.8.0 builds on the toolchain this repository uses (Rust 1.95).
cargo_deb_version=3.8.0
profile="${CONVOY_PACKAGE_PROFILE:-release}"
out="${CONVOY_PACKAGE_OUT:-target/debian}"
only="${CONVOY_PACKAGE_ONLY:-convoyd convoy-agent convoy}"
target_dir="${CARGO_TARGET_DIR:-target}"
case "$profile" in
  dev) profile_dir="$target_dir/debug" ;;
  *) profile_dir="$target_dir/$profile" ;;
esac

step() { printf '==> %s\n' "$*" >&2; }

# package name → crate, binary.
crate_of() {
  case "$1" in
    convoyd) echo convoy-coordinator ;;
    convoy-agent) echo convoy-agent ;;
    convoy) echo convoy-cli ;;
    *) echo "error: unknown package \`$1\` in CONVOY_PACKAGE_ONLY (convoyd, convoy-agent, convoy)" >&2; return 1 ;;
  esac
}
crates=()
for pkg in $only; do crates+=("$(crate_of "$pkg")"); done

if ! cargo deb --version 2>/dev/null | grep -qF "$cargo_deb_version"; then
  step "installing cargo-deb $cargo_deb_version"
  cargo install cargo-deb --version "$cargo_deb_version" --locked >&2
fi

if [ "${CONVOY_PACKAGE_NO_BUILD:-}" != 1 ]; then
  step "cargo build --profile $profile"
  args=()
  for c in "${crates[@]}"; do args+=(-p "$c"); done
  cargo build --profile "$profile" --bins "${args[@]}" >&2
fi

docs="$profile_dir/convoy-docs"
mkdir -p "$docs/units" "$out"
for pkg in $only; do
  bin="$profile_dir/$pkg"
  if [ ! -x "$bin" ]; then
    echo "error: $bin is missing: build it first (or leave CONVOY_PACKAGE_NO_BUILD unset)" >&2
    exit 1
  fi
  step "completions and man pages of $pkg"
  rm -rf "${docs:?}/$pkg"
  "$bin" generate-docs "$docs/$pkg" >/dev/null
  gzip -9nf "$docs/$pkg"/man/*.1
  # The one unit file of systemd/, with the binary where the package puts it.
  if [ -f "systemd/$pkg.service" ]; then
    sed 's#/usr/local/bin/#/usr/bin/#g' "systemd/$pkg.service" >"$docs/units/$pkg.service"
  fi
done

fast=()
[ "${CONVOY_PACKAGE_FAST:-}" = 1 ] && fast=(--fast)
for pkg in $only; do
  step "cargo deb -p $(crate_of "$pkg")"
  cargo deb -p "$(crate_of "$pkg")" --profile "$profile" --no-build --output "$out" "${fast[@]}" >&2
  ls -t "$out/${pkg}_"*.deb | head -n1
done
