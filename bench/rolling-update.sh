#!/usr/bin/env bash
# How long a rolling update of 4 replicas (one at a time, each healthy for
# `monitor` before the next) takes with `convoy apply --wait`, against its
# floor measured in the same sitting with the docker CLI alone: for each of
# the 4 instances, stop the old container, start the new one, wait until
# Docker's healthcheck says healthy, then wait `monitor`.
#
#   bash bench/rolling-update.sh                 # ROUNDS=5 MONITOR=1
#   ROUNDS=3 MONITOR=2 bash bench/rolling-update.sh
#   PROFILE=debug ROUNDS=1 bash bench/rolling-update.sh   # check the script
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
rounds="${ROUNDS:-5}"
monitor="${MONITOR:-1}"
replicas=4
bench_start
svc="$run_id-roll"
hc='["CMD", "/convoy-testapp", "--probe", "http://127.0.0.1:8080/healthz"]'

spec() { # greeting
  cat <<YAML
services:
  $svc:
    image: "$image"
    command: ["/convoy-testapp", "--listen", "0.0.0.0:8080"]
    environment: { GREETING: "$1" }
    stop_grace_period: 1s
    healthcheck: { test: $hc, interval: 1s, timeout: 2s, retries: 1 }
    deploy:
      replicas: $replicas
      update_config: { parallelism: 1, monitor: ${monitor}s }
YAML
}

spec v0 >"$work/spec.yaml"
"$convoy" apply -f "$work/spec.yaml" --wait --timeout 2m >/dev/null 2>&1

convoy_ms=()
floor_ms=()
for round in $(seq "$rounds"); do
  spec "v$round" >"$work/spec.yaml"
  t0="$(now_ns)"
  "$convoy" apply -f "$work/spec.yaml" --wait --timeout 5m >/dev/null 2>&1
  t1="$(now_ns)"
  convoy_ms+=($(((t1 - t0) / 1000000)))

  # The floor: the same 4 replacements by hand, with the same gates. A
  # scratch image has no shell for `docker run --health-cmd`, so the floor
  # polls /healthz itself and counts Docker's first healthcheck as one
  # interval (1 s) after the start, then `monitor`.
  for i in $(seq "$replicas"); do
    docker run -d --name "$run_id-floor-$i" --label "$run_id=docker-run" \
      --stop-timeout 1 "$image" /convoy-testapp --listen 0.0.0.0:8080 >/dev/null
  done
  t0="$(now_ns)"
  for i in $(seq "$replicas"); do
    docker stop -t 1 "$run_id-floor-$i" >/dev/null
    started="$(now_ns)"
    docker run -d --name "$run_id-floor-$i-new" --label "$run_id=docker-run" \
      --stop-timeout 1 "$image" /convoy-testapp --listen 0.0.0.0:8080 >/dev/null
    ip="$(docker inspect -f '{{.NetworkSettings.IPAddress}}' "$run_id-floor-$i-new")"
    until curl -sf "http://$ip:8080/healthz" >/dev/null; do sleep 0.02; done
    first_check=$((started + 1000000000))
    now="$(now_ns)"
    [ "$now" -lt "$first_check" ] && sleep "$(awk -v d=$((first_check - now)) 'BEGIN { print d / 1e9 }')"
    sleep "$monitor"
  done
  t1="$(now_ns)"
  floor_ms+=($(((t1 - t0) / 1000000)))
  docker rm -f $(docker ps -aq --filter "label=$run_id=docker-run") >/dev/null
  echo "round $round: convoy apply --wait ${convoy_ms[-1]} ms, floor ${floor_ms[-1]} ms"
done

read -r cm cmin cmax <<<"$(stats "${convoy_ms[@]}")"
read -r fm fmin fmax <<<"$(stats "${floor_ms[@]}")"
echo
echo "rolling update of $replicas replicas, parallelism 1, monitor ${monitor}s, $rounds rounds, $profile build, $(nproc) CPUs, Docker $(docker version --format '{{.Server.Version}}')"
printf '%-34s median %6d ms   spread %d-%d ms\n' "convoy apply --wait" "$cm" "$cmin" "$cmax"
printf '%-34s median %6d ms   spread %d-%d ms\n' "floor (docker CLI, same gates)" "$fm" "$fmin" "$fmax"
awk -v a="$cm" -v b="$fm" 'BEGIN { printf "ratio (convoy / floor): %.2f\n", a / b }'
