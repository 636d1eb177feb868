#!/usr/bin/env bash
# Several coordinators (issue 18), in one sitting on this machine:
#   fanout   apply → every agent acked, 1,000 simulated agents (convoy-bench
#            fanout): one coordinator on sled, then a leader on a
#            three-member etcd with two standbys beside it.
#   failover three coordinators on a three-member etcd; the leader is killed
#            (SIGKILL) KILLS times: time until another one serves as leader
#            (its ready line), p50 and max.
#   spread   apply → every agent acked, N simulated agents, three coordinators
#            on the three-member etcd: all agents on the leader, then the
#            same agents spread over the leader and both standbys (which send
#            their agents' plans themselves and relay the rest to the
#            leader); CPU of each coordinator over each run.
#   forward  two coordinators: CALLS `convoy status` calls given the leader's
#            address, then as many given the standby's (which forwards them
#            to the leader): time per call, each including the CLI's start.
#
#   bash bench/ha.sh                          # N=1000 ROUNDS=5 KILLS=10 CALLS=200
#   SCENARIOS=failover KILLS=10 bash bench/ha.sh
#   PROFILE=debug N=100 ROUNDS=1 KILLS=2 bash bench/ha.sh   # check the script
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
profile="${PROFILE:-release}"
n="${N:-1000}"
rounds="${ROUNDS:-5}"
kills="${KILLS:-10}"
ttl="${LEADER_TTL:-2s}"
calls="${CALLS:-200}"
scenarios="${SCENARIOS:-fanout spread failover forward}"
want() { [[ " $scenarios " == *" $1 "* ]]; }
command -v etcd >/dev/null || { echo "error: etcd is not installed (apt-get install etcd-server)" >&2; exit 1; }

if [ "$profile" = release ]; then
  cargo build --release --bins -p convoy-coordinator -p convoy-loadtest -p convoy-cli >&2
else
  cargo build --bins -p convoy-coordinator -p convoy-loadtest -p convoy-cli >&2
fi
convoy="$root/target/$profile/convoy"
convoyd="$root/target/$profile/convoyd"
bench="$root/target/$profile/convoy-bench"
ulimit -n "$(ulimit -Hn)" 2>/dev/null || true
work="$(mktemp -d -t convoy-ha-XXXXXX)"
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill -9 "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT

port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

# A three-member etcd on loopback, as the e2e tests run it.
cluster="" endpoints=()
declare -a cports pports
for i in 1 2 3; do cports[$i]=$(port); pports[$i]=$(port); done
for i in 1 2 3; do
  cluster+="${cluster:+,}e$i=http://127.0.0.1:${pports[$i]}"
  endpoints+=("127.0.0.1:${cports[$i]}")
done
for i in 1 2 3; do
  etcd --name "e$i" --data-dir "$work/etcd$i" \
    --listen-client-urls "http://127.0.0.1:${cports[$i]}" --advertise-client-urls "http://127.0.0.1:${cports[$i]}" \
    --listen-peer-urls "http://127.0.0.1:${pports[$i]}" --initial-advertise-peer-urls "http://127.0.0.1:${pports[$i]}" \
    --initial-cluster "$cluster" --initial-cluster-state new \
    --max-txn-ops 100000 --max-request-bytes 33554432 --quota-backend-bytes 8589934592 \
    >"$work/etcd$i.log" 2>&1 &
  pids+=($!)
done
joined="$(IFS=,; echo "${endpoints[*]}")"
for _ in $(seq 100); do
  ETCDCTL_API=3 etcdctl --endpoints "$joined" endpoint health >/dev/null 2>&1 && break
  sleep 0.2
done
echo "machine: $(nproc) cores; etcd $(etcd --version | head -1 | awk '{print $3}') x3 on loopback"

if want fanout; then
  echo "== fanout N=$n, one coordinator on sled"
  "$bench" fanout --convoyd "$convoyd" --n "$n" --rounds "$rounds" 2>&1 | grep -E "summary|round" || true
  echo "== fanout N=$n, leader on etcd (3 members) + 2 standbys"
  prefix="/bench-$$-fanout/"
  export CONVOY_STORE="etcd://$joined$prefix" CONVOY_NAME=bench-leader CONVOY_LEADER_TTL=$ttl
  "$bench" fanout --convoyd "$convoyd" --n "$n" --rounds "$rounds" >"$work/fanout-etcd.out" 2>&1 &
  bench_pid=$!
  # The standbys join once the bench's coordinator leads (its agents are
  # still connecting then).
  for _ in $(seq 300); do
    ETCDCTL_API=3 etcdctl --endpoints "$joined" get --prefix "${prefix}ha/leader" --keys-only 2>/dev/null | grep -q . && break
    sleep 0.1
  done
  for s in 1 2; do
    d="$work/standby$s"; mkdir -p "$d"
    a=$(port); b=$(port); h=$(port)
    CONVOY_NAME="bench-standby$s" "$convoyd" serve --data-dir "$d" \
      --api-listen "127.0.0.1:$a" --agent-listen "127.0.0.1:$b" --http-listen "127.0.0.1:$h" \
      >"$d/log" 2>&1 &
    pids+=($!)
  done
  wait "$bench_pid" || true
  unset CONVOY_STORE CONVOY_NAME CONVOY_LEADER_TTL
  grep -E "summary|round" "$work/fanout-etcd.out" || cat "$work/fanout-etcd.out"
  for s in 1 2; do
    if grep -q "standing by" "$work/standby$s/log" 2>/dev/null; then echo "standby$s stood by during the run"; else echo "standby$s:"; tail -5 "$work/standby$s/log" 2>/dev/null || true; fi
  done
fi

if want spread; then
  echo "== spread N=$n: three coordinators on etcd, agents on the leader, then spread over all three"
  declare -a sdir sapi sagent shttp spid
  start_three() { # run label: three coordinators on a fresh prefix
    local i
    for i in 1 2 3; do
      sdir[$i]="$work/$1-s$i"; mkdir -p "${sdir[$i]}"
      sapi[$i]=$(port); sagent[$i]=$(port); shttp[$i]=$(port)
      if [ "$i" != 1 ]; then
        mkdir -p "${sdir[$i]}/pki"
        cp "${sdir[1]}/pki/ca.pem" "${sdir[1]}/pki/ca.key" "${sdir[$i]}/pki/"
        cp "${sdir[1]}/secrets.key" "${sdir[$i]}/" 2>/dev/null || true
      fi
      CONVOY_STORE="etcd://$joined/bench-$$-$1/" "$convoyd" serve --data-dir "${sdir[$i]}" --name "s$i" --leader-ttl "$ttl" \
        --api-listen "127.0.0.1:${sapi[$i]}" --agent-listen "127.0.0.1:${sagent[$i]}" --http-listen "127.0.0.1:${shttp[$i]}" \
        >"${sdir[$i]}.log" 2>&1 &
      spid[$i]=$!; pids+=($!)
      for _ in $(seq 300); do grep -qE "convoyd (ready|standing by)" "${sdir[$i]}.log" 2>/dev/null && break; sleep 0.1; done
    done
  }
  cpu_of() { awk '{print $14 + $15}' "/proc/$1/stat"; }
  tick=$(getconf CLK_TCK)
  run_spread() { # label (leader: every agent on the leader; spread: over all three)
    local label=$1
    local before=() after=() i extra=()
    start_three "$label"
    [ "$label" = spread ] && extra=(--also-agents "127.0.0.1:${sagent[2]},127.0.0.1:${sagent[3]}")
    for i in 1 2 3; do before[$i]=$(cpu_of "${spid[$i]}"); done
    "$bench" fanout --n "$n" --rounds "$rounds" \
      --coordinator "127.0.0.1:${sagent[1]}" --api "127.0.0.1:${sapi[1]}" --data-dir "${sdir[1]}" --pid "${spid[1]}" \
      "${extra[@]}" 2>&1 | grep -E "summary|round" || true
    for i in 1 2 3; do after[$i]=$(cpu_of "${spid[$i]}"); done
    echo "spread $label cpu_ms: leader=$(( (after[1]-before[1]) * 1000 / tick )) standby1=$(( (after[2]-before[2]) * 1000 / tick )) standby2=$(( (after[3]-before[3]) * 1000 / tick )) (whole run, connecting included)"
    for i in 1 2 3; do kill -9 "${spid[$i]}" 2>/dev/null || true; wait "${spid[$i]}" 2>/dev/null || true; done
  }
  run_spread leader
  run_spread spread
fi

if want failover; then
  echo "== failover: 3 coordinators, leader TTL $ttl, $kills kills"
  prefix="/bench-$$-failover/"
  declare -a cpid cdir chttp
  start_c() { # index
    local i=$1 a b
    a=$(port); b=$(port)
    CONVOY_STORE="etcd://$joined$prefix" "$convoyd" serve --data-dir "${cdir[$i]}" --name "c$i" --leader-ttl "$ttl" \
      --api-listen "127.0.0.1:$a" --agent-listen "127.0.0.1:$b" --http-listen "127.0.0.1:${chttp[$i]}" \
      >>"${cdir[$i]}.log" 2>&1 &
    cpid[$i]=$!
    pids+=($!)
  }
  for i in 1 2 3; do cdir[$i]="$work/c$i"; chttp[$i]=$(port); mkdir -p "${cdir[$i]}"; done
  start_c 1
  for _ in $(seq 200); do grep -q "convoyd ready" "${cdir[1]}.log" 2>/dev/null && break; sleep 0.1; done
  for i in 2 3; do mkdir -p "${cdir[$i]}/pki"; cp "${cdir[1]}/pki/ca.pem" "${cdir[1]}/pki/ca.key" "${cdir[$i]}/pki/"; cp "${cdir[1]}/secrets.key" "${cdir[$i]}/" 2>/dev/null || true; start_c "$i"; done
  sleep 2
  leader_of() { for i in 1 2 3; do curl -fs "http://127.0.0.1:${chttp[$i]}/metrics" 2>/dev/null | grep -qx "convoy_coordinator_leader 1" && { echo "$i"; return; }; done; echo ""; }
  times=()
  for k in $(seq "$kills"); do
    l="$(leader_of)"
    [ -n "$l" ] || { sleep 1; l="$(leader_of)"; }
    [ -n "$l" ] || { echo "no leader before kill $k"; break; }
    readies=$(cat "${cdir[1]}.log" "${cdir[2]}.log" "${cdir[3]}.log" | grep -c "convoyd ready" || true)
    t0=$(date +%s%N)
    kill -9 "${cpid[$l]}"
    while :; do
      now=$(cat "${cdir[1]}.log" "${cdir[2]}.log" "${cdir[3]}.log" | grep -c "convoyd ready" || true)
      [ "$now" -gt "$readies" ] && break
      [ $(( ($(date +%s%N) - t0) / 1000000 )) -gt 60000 ] && { echo "kill $k: no new leader in 60 s"; break; }
      sleep 0.02
    done
    ms=$(( ($(date +%s%N) - t0) / 1000000 ))
    times+=("$ms")
    echo "kill $k: c$l killed, new leader serving after ${ms} ms"
    start_c "$l"
    sleep 3
  done
  printf '%s\n' "${times[@]}" | sort -n | awk '{a[NR]=$1} END {printf "failover summary kills=%d p50_ms=%d max_ms=%d min_ms=%d\n", NR, a[int((NR+1)/2)], a[NR], a[1]}'
fi

if want forward; then
  echo "== forward: 2 coordinators, $calls status calls to each"
  prefix="/bench-$$-forward/"
  declare -a fapi fdir fpid
  for i in 1 2; do
    fdir[$i]="$work/f$i"; mkdir -p "${fdir[$i]}"; fapi[$i]=$(port)
    if [ "$i" = 2 ]; then mkdir -p "${fdir[2]}/pki"; cp "${fdir[1]}/pki/ca.pem" "${fdir[1]}/pki/ca.key" "${fdir[2]}/pki/"; cp "${fdir[1]}/secrets.key" "${fdir[2]}/" 2>/dev/null || true; fi
    CONVOY_STORE="etcd://$joined$prefix" "$convoyd" serve --data-dir "${fdir[$i]}" --name "f$i" --leader-ttl "$ttl" \
      --api-listen "127.0.0.1:${fapi[$i]}" --agent-listen "127.0.0.1:$(port)" --http-listen "127.0.0.1:$(port)" \
      >"${fdir[$i]}.log" 2>&1 &
    fpid[$i]=$!; pids+=($!)
    for _ in $(seq 200); do grep -qE "convoyd (ready|standing by)" "${fdir[$i]}.log" 2>/dev/null && break; sleep 0.1; done
  done
  sleep 1
  per_call() { # index of the coordinator given to the CLI
    local t0 i
    t0=$(date +%s%N)
    for i in $(seq "$calls"); do
      CONVOY_ADDR="https://127.0.0.1:${fapi[$1]}" CONVOY_CA="${fdir[1]}/pki/ca.pem" CONVOY_TOKEN_FILE="${fdir[1]}/admin.token" \
        CONVOY_CONFIG="$work/none.yaml" "$convoy" -o json status >/dev/null
    done
    echo $(( ($(date +%s%N) - t0) / calls / 1000 ))
  }
  for round in 1 2 3; do
    direct=$(per_call 1); forwarded=$(per_call 2)
    echo "forward round $round: leader ${direct} us/call, through the standby ${forwarded} us/call"
  done
fi
