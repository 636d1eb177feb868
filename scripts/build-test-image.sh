#!/usr/bin/env bash
# Builds the image the end-to-end tests deploy: convoy-testapp, linked
# statically and packed FROM scratch, since no registry can be reached here.
#
# Tags `convoy-testapp:src-HASH` (HASH over the app's sources and this script)
# and `convoy-testapp:latest`. Does nothing but re-tag when the hash tag is
# already there. Prints the hash tag as its last line of stdout. The image's
# CMD (not ENTRYPOINT) serves on :8080, so a spec's `command:` replaces it
# whole: `command: ["/convoy-testapp", "--listen", "0.0.0.0:8081"]`.
#
# Uses its own target dir (target/static) so the static RUSTFLAGS do not
# invalidate the main build's cache. Env: CONVOY_TESTAPP_IMAGE (default
# convoy-testapp), CARGO (default cargo).
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
repo="${CONVOY_TESTAPP_IMAGE:-convoy-testapp}"
cargo="${CARGO:-cargo}"

hash="$(
  {
    find tests/testapp -type f -not -path '*/target/*' -print0 | LC_ALL=C sort -z | xargs -0 sha256sum
    sha256sum scripts/build-test-image.sh
  } | sha256sum | cut -c1-16
)"
tag="$repo:src-$hash"

if docker image inspect "$tag" >/dev/null 2>&1; then
  docker tag "$tag" "$repo:latest"
  echo "$tag"
  exit 0
fi

triple="$(rustc -vV | sed -n 's/^host: //p')"
echo "building $tag (static, $triple)" >&2
RUSTFLAGS="-C target-feature=+crt-static" "$cargo" build --release \
  -p convoy-testapp --target "$triple" --target-dir target/static >&2
bin="target/static/$triple/release/convoy-testapp"

ctx="$(mktemp -d)"
trap 'rm -rf "$ctx"' EXIT
cp "$bin" "$ctx/convoy-testapp"
cat >"$ctx/Dockerfile" <<'DOCKERFILE'
FROM scratch
COPY convoy-testapp /convoy-testapp
CMD ["/convoy-testapp", "--listen", "0.0.0.0:8080"]
DOCKERFILE

# The legacy builder turns FROM scratch into an image without fetching
# anything; BuildKit may not be installed (no buildx here) and would try to
# resolve metadata.
DOCKER_BUILDKIT=0 docker build --quiet \
  --label io.convoy.test-image=true \
  -t "$tag" -t "$repo:latest" "$ctx" >&2
echo "$tag"
