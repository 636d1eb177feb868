#!/usr/bin/env bash
# Scale (issue 7): one coordinator on this machine against N simulated agents
# (convoy-bench, one process, each agent with its own certificate, mTLS
# connection and stream), beside the fanout-floor yardstick in the same
# sitting, and the real agent's idle RSS with 20 containers.
#
#   bash bench/scale.sh                              # N="1000 10000" ROUNDS=5
#   N=1000 ROUNDS=3 bash bench/scale.sh
#   SCENARIOS="fanout memory" N=10000 bash bench/scale.sh
#   STEADY_SECS=600 SCENARIOS=loss N=10000 bash bench/scale.sh
#   PROFILE=debug N=200 ROUNDS=1 STEADY_SECS=5 bash bench/scale.sh   # check the script
#
# Scenarios: floor fanout memory loss ingest reconnect agent (default: all).
# Env: RATE (ingest reports/s, default 100000), INGEST_SECS (10),
# STEADY_SECS (false-loss watch after the loss rounds, default 60),
# FLOOR_DIR (default ../shared/tools/fanout-floor), CONVOYD (another convoyd
# to measure, e.g. a candidate build; default target/PROFILE/convoyd).
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
profile="${PROFILE:-release}"
sizes="${N:-1000 10000}"
rounds="${ROUNDS:-5}"
rate="${RATE:-100000}"
ingest_secs="${INGEST_SECS:-10}"
steady="${STEADY_SECS:-60}"
scenarios="${SCENARIOS:-floor fanout memory loss ingest reconnect agent}"
floor_dir="${FLOOR_DIR:-$root/../shared/tools/fanout-floor}"
want() { [[ " $scenarios " == *" $1 "* ]]; }

if [ "$profile" = release ]; then
  cargo build --release --bins -p convoy-coordinator -p convoy-loadtest >&2
else
  cargo build --bins -p convoy-coordinator -p convoy-loadtest >&2
fi
bench="$root/target/$profile/convoy-bench"
convoyd_args=()
[ -n "${CONVOYD:-}" ] && convoyd_args=(--convoyd "$CONVOYD")
floor=""
if want floor; then
  (cd "$floor_dir" && cargo build --release >&2)
  floor="$floor_dir/target/release/fanout-floor"
fi
# 10,000 agents need 10,000+ sockets in each process (harness, coordinator);
# convoy-bench raises its own soft limit to the hard one, and the coordinator
# it starts inherits it.
ulimit -n "$(ulimit -Hn)" 2>/dev/null || true

log="$(mktemp -t convoy-scale-XXXXXX.log)"
run() { # prints and keeps every line
  echo "+ $*" >&2
  "$@" 2>&1 | tee -a "$log" || echo "FAILED: $*" | tee -a "$log"
}
echo "machine: $(nproc) cores, $(awk '/MemTotal/ {printf "%.0f GiB", $2/1048576}' /proc/meminfo), open files $(ulimit -n)" | tee -a "$log"

for n in $sizes; do
  stop=$((n / 10 < 100 ? n / 10 : 100))
  echo "== N=$n $(uptime | sed 's/.*load/load/')" | tee -a "$log"
  if want floor; then run "$floor" run --n "$n" --rounds "$rounds"; fi
  if want fanout; then run "$bench" fanout "${convoyd_args[@]}" --n "$n" --rounds "$rounds"; fi
  if want memory; then run "$bench" memory "${convoyd_args[@]}" --n "$n"; fi
  if want loss; then run "$bench" loss "${convoyd_args[@]}" --n "$n" --stop "$stop" --rounds "$rounds" --steady-secs "$steady"; fi
  if want ingest; then run "$bench" ingest "${convoyd_args[@]}" --n "$n" --rate "$rate" --secs "$ingest_secs" --rounds "$rounds"; fi
  if want reconnect; then run "$bench" reconnect "${convoyd_args[@]}" --n "$n" --rounds "$rounds"; fi
done

if want agent; then
  # The real agent, idle, with 20 containers of the test image running.
  source "$root/bench/lib.sh"
  bench_start
  svc="$run_id-idle"
  cat >"$work/idle.yaml" <<YAML
services:
  $svc:
    image: "$image"
    command: ["/convoy-testapp", "--listen", "0.0.0.0:8080"]
    stop_grace_period: 1s
    deploy:
      replicas: 20
YAML
  "$convoy" apply -f "$work/idle.yaml" --wait --timeout 5m >/dev/null
  running=$(docker ps -q --filter "label=io.convoy.node=$node" | wc -l)
  sleep 10
  agent_pid="${pids[1]}"
  samples=()
  for _ in $(seq 30); do
    samples+=("$(awk '/VmRSS/ {print $2}' "/proc/$agent_pid/status")")
    sleep 1
  done
  read -r med lo hi <<<"$(stats "${samples[@]}")"
  echo "agent idle containers=$running rss_kib median=$med min=$lo max=$hi (30 samples, 1 s apart)" | tee -a "$log"
fi

echo "== summary"
grep -hE '^(machine|connect|n=|fanout .*summary|memory|loss .*summary|steady n|ingest .*summary|reconnect .*summary|agent idle)' "$log" || true
# Convoy / floor ratios, per N, from the lines above.
awk '
  /^== N=/ { split($2, a, "="); n = a[2] }
  /^n=[0-9]+ .*connect_all_s=/ { for (i = 1; i <= NF; i++) { if ($i ~ /^per_stream_kib=/) { split($i, a, "="); fkib[n] = a[2] } if ($i ~ /^connect_all_s=/) { split($i, a, "="); fconn[n] = a[2] } } }
  /^round=[0-9]+ delivered=/ { for (i = 1; i <= NF; i++) if ($i ~ /^p99=/) { split($i, a, "="); fp99[n] = fp99[n] " " a[2] } }
  /^fanout .*summary/ { for (i = 1; i <= NF; i++) if ($i ~ /^ack_p99_ms=/) { split($i, a, "="); cp99[n] = a[2] } }
  /^memory / { for (i = 1; i <= NF; i++) if ($i ~ /^per_agent_kib=/) { split($i, a, "="); ckib[n] = a[2] } }
  /^connect n=/ && !(n in cconn) { for (i = 1; i <= NF; i++) if ($i ~ /^all_welcomed_s=/) { split($i, a, "="); cconn[n] = a[2] } }
  function median(s,   v, k, m, i, j, t) {
    k = split(s, v, " ")
    for (i = 1; i <= k; i++) for (j = i + 1; j <= k; j++) if (v[j] + 0 < v[i] + 0) { t = v[i]; v[i] = v[j]; v[j] = t }
    return (k % 2) ? v[(k + 1) / 2] : (v[k / 2] + v[k / 2 + 1]) / 2
  }
  END {
    for (n in fkib) {
      fp = median(fp99[n])
      printf "ratio N=%s: fan-out p99 %s / %s ms = %.2f; memory %s / %s KiB = %.2f; connect %s / %s s = %.2f\n", n,
        cp99[n], fp, (fp > 0 ? cp99[n] / fp : 0), ckib[n], fkib[n], (fkib[n] > 0 ? ckib[n] / fkib[n] : 0),
        cconn[n], fconn[n], (fconn[n] > 0 ? cconn[n] / fconn[n] : 0)
    }
  }' "$log"
echo "full log: $log"
