#!/usr/bin/env bash
# How long `convoy apply` of a 10-replica service takes until Docker runs all
# 10 containers, against starting the same 10 containers with `docker run -d`
# in a loop. Starts its own cluster (release build): convoyd + one agent on
# loopback ports, data in a temp dir, everything removed at the end.
#
#   bash bench/apply-vs-docker-run.sh            # ROUNDS=5 REPLICAS=10
#   ROUNDS=10 REPLICAS=20 bash bench/apply-vs-docker-run.sh
#   PROFILE=debug ROUNDS=1 bash bench/apply-vs-docker-run.sh   # check the script
#
# Prints every round, then median, min-max spread and the ratio of medians.
# Needs the Docker Engine; builds the test image (scripts/build-test-image.sh).
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
rounds="${ROUNDS:-5}"
replicas="${REPLICAS:-10}"
poll=0.02
bench_start
svc="$run_id-web"

cat >"$work/spec.yaml" <<YAML
services:
  $svc:
    image: "$image"
    command: ["/convoy-testapp", "--listen", "0.0.0.0:8080"]
    stop_grace_period: 1s
    deploy:
      replicas: $replicas
YAML

running() { docker ps -q --filter "label=$1" --filter status=running | wc -l; }
wait_count() { # label count
  while [ "$(running "$1")" -ne "$2" ]; do sleep "$poll"; done
}

convoy_ms=()
docker_ms=()
par_ms=()
for round in $(seq "$rounds"); do
  t0="$(now_ns)"
  "$convoy" apply -f "$work/spec.yaml" >/dev/null
  wait_count "io.convoy.service=$svc" "$replicas"
  t1="$(now_ns)"
  convoy_ms+=($(((t1 - t0) / 1000000)))
  "$convoy" delete "$svc" >/dev/null
  while [ "$(docker ps -aq --filter "label=io.convoy.service=$svc" | wc -l)" -ne 0 ]; do sleep 0.1; done

  t0="$(now_ns)"
  for i in $(seq "$replicas"); do
    docker run -d --name "$run_id-docker-$i" --label "$run_id=docker-run" \
      --stop-timeout 1 "$image" /convoy-testapp --listen 0.0.0.0:8080 >/dev/null
  done
  wait_count "$run_id=docker-run" "$replicas"
  t1="$(now_ns)"
  docker_ms+=($(((t1 - t0) / 1000000)))
  docker rm -f $(docker ps -aq --filter "label=$run_id=docker-run") >/dev/null

  # The same 10 `docker run -d` started all at once: the fastest a script
  # can go through the docker CLI.
  t0="$(now_ns)"
  par_pids=()
  for i in $(seq "$replicas"); do
    docker run -d --name "$run_id-par-$i" --label "$run_id=docker-run" \
      --stop-timeout 1 "$image" /convoy-testapp --listen 0.0.0.0:8080 >/dev/null &
    par_pids+=($!)
  done
  wait_count "$run_id=docker-run" "$replicas"
  t1="$(now_ns)"
  par_ms+=($(((t1 - t0) / 1000000)))
  wait "${par_pids[@]}"
  docker rm -f $(docker ps -aq --filter "label=$run_id=docker-run") >/dev/null

  echo "round $round: convoy apply ${convoy_ms[-1]} ms, docker run loop ${docker_ms[-1]} ms, docker run parallel ${par_ms[-1]} ms"
done

read -r cm cmin cmax <<<"$(stats "${convoy_ms[@]}")"
read -r dm dmin dmax <<<"$(stats "${docker_ms[@]}")"
read -r pm pmin pmax <<<"$(stats "${par_ms[@]}")"
echo
echo "$replicas containers, $rounds rounds, $profile build, $(nproc) CPUs, Docker $(docker version --format '{{.Server.Version}}')"
printf '%-28s median %6d ms   spread %d-%d ms\n' "convoy apply -> all running" "$cm" "$cmin" "$cmax"
printf '%-28s median %6d ms   spread %d-%d ms\n' "docker run -d x$replicas" "$dm" "$dmin" "$dmax"
printf '%-28s median %6d ms   spread %d-%d ms\n' "docker run -d x$replicas (&)" "$pm" "$pmin" "$pmax"
awk -v a="$cm" -v b="$dm" 'BEGIN { printf "ratio (convoy / docker run loop): %.2f\n", a / b }'
awk -v a="$cm" -v b="$pm" 'BEGIN { printf "ratio (convoy / docker run parallel): %.2f\n", a / b }'
