# Shared by the bench scripts: builds the binaries and the test image, starts
# convoyd + one agent on loopback ports in a temp dir, and cleans up on exit.
# Sets: root, bin, image, work, run_id, node, convoy (the CLI), pids, and
# exports the CONVOY_* variables. Call `bench_start`, then use `stats`.

bench_start() {
  root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
  cd "$root"
  profile="${PROFILE:-release}"
  if [ "$profile" = release ]; then
    cargo build --release --bins -p convoy-coordinator -p convoy-agent -p convoy-cli >&2
  else
    cargo build --bins -p convoy-coordinator -p convoy-agent -p convoy-cli >&2
  fi
  image="$(bash scripts/build-test-image.sh | tail -n 1)"
  bin="$root/target/$profile"
  work="$(mktemp -d -t convoy-bench-XXXXXX)"
  run_id="bench$$"
  node="$run_id-node"
  pids=()
  trap bench_cleanup EXIT

  local api_port agent_port
  api_port="$(free_port)"
  agent_port="$(free_port)"
  "$bin/convoyd" serve --data-dir "$work/coordinator" \
    --api-listen "127.0.0.1:$api_port" --agent-listen "127.0.0.1:$agent_port" \
    --http-listen 127.0.0.1:0 >"$work/convoyd.log" 2>&1 &
  pids+=($!)
  for _ in $(seq 300); do grep -q 'convoyd ready:' "$work/convoyd.log" && break; sleep 0.1; done
  grep -q 'convoyd ready:' "$work/convoyd.log" || { cat "$work/convoyd.log" >&2; echo "convoyd did not start" >&2; exit 1; }

  "$bin/convoyd" issue-cert --data-dir "$work/coordinator" --node "$node" --out "$work/pki" >/dev/null
  "$bin/convoy-agent" run --coordinator "127.0.0.1:$agent_port" --pki-dir "$work/pki" \
    --data-dir "$work/agent" >"$work/agent.log" 2>&1 &
  pids+=($!)

  export CONVOY_ADDR="https://127.0.0.1:$api_port" CONVOY_CA="$work/coordinator/pki/ca.pem"
  export CONVOY_TOKEN_FILE="$work/coordinator/admin.token" CONVOY_CONFIG="$work/config.yaml"
  convoy="$bin/convoy"
  for _ in $(seq 300); do
    "$convoy" -o json nodes 2>/dev/null | grep -q '"state":"ready"' && break
    sleep 0.1
  done
}

bench_cleanup() {
  for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
  wait 2>/dev/null || true
  local ids
  ids="$(docker ps -aq --filter "label=io.convoy.node=$node"; docker ps -aq --filter "label=$run_id=docker-run")"
  [ -n "$ids" ] && docker rm -f $ids >/dev/null 2>&1 || true
  rm -rf "$work"
}

free_port() { # a loopback port nothing answers on
  local p
  while :; do
    p=$((20000 + RANDOM % 40000))
    (exec 3<>"/dev/tcp/127.0.0.1/$p") 2>/dev/null || { echo "$p"; return; }
  done
}

now_ns() { date +%s%N; }

stats() { # prints "median min max"
  printf '%s\n' "$@" | sort -n | awk '{v[NR]=$1} END {
    m = (NR % 2) ? v[(NR+1)/2] : (v[NR/2] + v[NR/2+1]) / 2
    printf "%d %d %d\n", m, v[1], v[NR] }'
}
