#!/usr/bin/env bash
# Times `convoyd snapshot save` and `restore` at 10,000 nodes' worth of state
# (issue 18; BENCHMARKS.md, "Snapshots (issue 18)"): a sled store filled
# through the real record types, saved and restored ROUNDS times.
#
#   bench/snapshot.sh [--nodes 10000] [--services 50] [--rounds 5]
set -euo pipefail
cd "$(dirname "$0")/.."
exec cargo run --release -q -p convoy-coordinator --example snapshot_bench -- "$@"
