#!/usr/bin/env bash
# Issue 14, one sitting: the four YAML parsers on the corpus and on hostile
# shapes, then Convoy's own spec reader before (serde_yaml, commit 4fa06af)
# and after (serde-saphyr, AFTER, default HEAD), each built in a git worktree
# with its own target dir. See BENCHMARKS.md, "YAML parser for spec files".
#
#   bash bench/yaml-parsers/run.sh > /tmp/yaml-bench.md
#
# BEFORE / AFTER: the commits compared; ROUNDS: parses per file for
# Convoy's reader (default: about 1.5 s per file).
set -euo pipefail

root=$(git -C "$(dirname "$0")" rev-parse --show-toplevel)
before=${BEFORE:-4fa06af}
after=${AFTER:-HEAD}
example="$root/coordinator/examples/spec_parse_bench.rs"
rounds=()
[[ -n "${ROUNDS:-}" ]] && rounds=(--rounds "$ROUNDS")

(cd "$root/bench/yaml-parsers" && cargo build --release --quiet) >&2

for side in before after; do
  rev=${!side}
  tree=/tmp/yaml-$side
  [[ -d $tree ]] || git -C "$root" worktree add --detach "$tree" "$rev" >&2
  mkdir -p "$tree/coordinator/examples"
  cp "$example" "$tree/coordinator/examples/"
  (cd "$tree" && CARGO_TARGET_DIR=/tmp/yaml-$side-target \
    cargo build --release --quiet -p convoy-coordinator --example spec_parse_bench) >&2
done

echo "# YAML parsers, one sitting: $(date -u '+%Y-%m-%d %H:%M') UTC"
echo
echo "- machine: $(nproc) cores; load before: $(cut -d' ' -f1-3 /proc/loadavg)"
echo "- before: $(git -C /tmp/yaml-before log -1 --format='%h %s' | cut -c1-80)"
echo "- after: $(git -C /tmp/yaml-after log -1 --format='%h %s' | cut -c1-80)"
echo
"$root/bench/yaml-parsers/target/release/yaml-parsers-bench"
cd "$root"
for run in 1 2; do
  for side in before after; do
    echo "## Convoy's spec::parse, $side ($(git -C /tmp/yaml-$side log -1 --format=%h)), run $run"
    echo
    /tmp/yaml-$side-target/release/examples/spec_parse_bench "${rounds[@]}"
    echo
  done
done
echo "- load after: $(cut -d' ' -f1-3 /proc/loadavg); finished $(date -u '+%H:%M') UTC"

if [[ -z "${KEEP_WORKTREES:-}" ]]; then
  git -C "$root" worktree remove --force /tmp/yaml-before >&2
  git -C "$root" worktree remove --force /tmp/yaml-after >&2
fi
