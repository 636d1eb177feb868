#!/usr/bin/env bash
# The agent's ingress proxy against a direct connection and against nginx as
# a reverse proxy, in one sitting, with the same backend (nginx answering a
# fixed 13-byte body on loopback) and the same load (wrk, fixed connections).
#
#   bash bench/proxy.sh                       # CONNS=32 DURATION=10s ROUNDS=3
#   BASELINE=/path/to/old/convoy-agent bash bench/proxy.sh
#                                             # also an older build, same sitting
#   VARIANT="--threads 2" bash bench/proxy.sh # also this build with other flags
#
# Needs wrk and nginx (Debian: apt-get install wrk nginx-light); HAProxy is
# measured too when installed (apt-get install haproxy). The Convoy
# side is `convoy-agent bench-proxy`: the proxy's own request path (routes,
# pool pick, in-flight counting, pooled HTTP/1.1 to the backend) with a fixed
# table instead of a plan and Docker. Release build.
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
CONNS="${CONNS:-32}"
DURATION="${DURATION:-10s}"
ROUNDS="${ROUNDS:-3}"
THREADS="${THREADS:-1}"
command -v wrk >/dev/null || { echo "wrk is missing: apt-get install wrk" >&2; exit 1; }
NGINX="$(command -v nginx || echo /usr/sbin/nginx)"
[ -x "$NGINX" ] || { echo "nginx is missing: apt-get install nginx-light" >&2; exit 1; }
cargo build --release --bin convoy-agent -p convoy-agent >&2

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
work="$(mktemp -d -t convoy-bench-proxy-XXXXXX)"
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT

backend="$(free_port)"; via_nginx="$(free_port)"; via_convoy="$(free_port)"; via_base="$(free_port)"
nginx_conf() { # NAME WORKERS SERVER-BLOCK
  mkdir -p "$work/$1"
  cat >"$work/$1/nginx.conf" <<CONF
worker_processes $2;
daemon off;
pid $work/$1/nginx.pid;
error_log $work/$1/error.log warn;
events { worker_connections 4096; }
http {
  access_log off;
  client_body_temp_path $work/$1/body;
  proxy_temp_path $work/$1/proxy;
  fastcgi_temp_path $work/$1/fastcgi;
  uwsgi_temp_path $work/$1/uwsgi;
  scgi_temp_path $work/$1/scgi;
  keepalive_requests 1000000;
  $3
}
CONF
  "$NGINX" -c "$work/$1/nginx.conf" -p "$work/$1" &
  pids+=($!)
}
# The backend: one worker, a fixed answer.
nginx_conf backend 1 "server { listen 127.0.0.1:$backend; location / { return 200 'hello, bench\n'; } }"
# nginx as the reverse proxy: as many workers as cores, kept-alive upstream.
nginx_conf proxy auto "upstream b { server 127.0.0.1:$backend; keepalive 64; }
  server { listen 127.0.0.1:$via_nginx; location / { proxy_pass http://b; proxy_http_version 1.1; proxy_set_header Connection \"\"; proxy_set_header Host \$host; proxy_set_header X-Forwarded-For \$proxy_add_x_forwarded_for; } }"
RUST_LOG=warn target/release/convoy-agent bench-proxy --listen "127.0.0.1:$via_convoy" \
  --backend "127.0.0.1:$backend" >"$work/convoy.log" 2>&1 &
pids+=($!)
targets="direct:$backend nginx:$via_nginx convoy:$via_convoy"
# HAProxy too when installed (Debian: apt-get install haproxy): as many
# threads as cores, kept-alive upstream connections, the same headers.
HAPROXY="$(command -v haproxy || echo /usr/sbin/haproxy)"
if [ -x "$HAPROXY" ]; then
  via_haproxy="$(free_port)"
  mkdir -p "$work/haproxy"
  cat >"$work/haproxy/haproxy.cfg" <<CONF
global
  nbthread $(nproc)
defaults
  mode http
  timeout connect 5s
  timeout client 30s
  timeout server 30s
  http-reuse always
  option forwardfor
frontend f
  bind 127.0.0.1:$via_haproxy
  default_backend b
backend b
  server s1 127.0.0.1:$backend
CONF
  "$HAPROXY" -f "$work/haproxy/haproxy.cfg" -db >"$work/haproxy/log" 2>&1 &
  pids+=($!)
  targets="$targets haproxy:$via_haproxy"
fi
if [ -n "${VARIANT:-}" ]; then
  # The same build with other bench-proxy flags, e.g. VARIANT="--threads 2".
  via_variant="$(free_port)"
  # shellcheck disable=SC2086
  RUST_LOG=warn target/release/convoy-agent bench-proxy --listen "127.0.0.1:$via_variant" \
    --backend "127.0.0.1:$backend" $VARIANT >"$work/variant.log" 2>&1 &
  pids+=($!)
  targets="$targets variant:$via_variant"
fi
if [ -n "${BASELINE:-}" ]; then
  RUST_LOG=warn "$BASELINE" bench-proxy --listen "127.0.0.1:$via_base" \
    --backend "127.0.0.1:$backend" >"$work/baseline.log" 2>&1 &
  pids+=($!)
  targets="$targets baseline:$via_base"
fi
for port in $(for t in $targets; do echo "${t#*:}"; done); do
  for _ in $(seq 100); do curl -sf "http://127.0.0.1:$port/" >/dev/null 2>&1 && break; sleep 0.1; done
  curl -sf "http://127.0.0.1:$port/" >/dev/null || { cat "$work"/*/error.log "$work"/*.log "$work"/haproxy/log >&2 2>/dev/null; echo "port $port does not answer" >&2; exit 1; }
done

# wrk's "Requests/sec", p50 and p99 (ms) of one run.
measure() {
  local out rps p50 p99
  out="$(wrk -t"$THREADS" -c"$CONNS" -d"$DURATION" --latency "http://127.0.0.1:$1/")"
  if echo "$out" | grep -q "Non-2xx\|Socket errors"; then echo "$out" >&2; fi
  rps="$(echo "$out" | awk '/Requests\/sec/ {print $2}')"
  to_ms() { awk '{v=$1; if (v ~ /us$/) {sub(/us$/,"",v); v=v/1000} else if (v ~ /ms$/) {sub(/ms$/,"",v)} else if (v ~ /s$/) {sub(/s$/,"",v); v=v*1000}; printf "%.3f", v}'; }
  p50="$(echo "$out" | awk '$1=="50%" {print $2}' | to_ms)"
  p99="$(echo "$out" | awk '$1=="99%" {print $2}' | to_ms)"
  echo "$rps $p50 $p99"
}

echo "wrk -t$THREADS -c$CONNS -d$DURATION, $ROUNDS rounds, $(nproc) cores" >&2
printf '%-8s %-7s %12s %9s %9s\n' round target req/s p50_ms p99_ms
for r in $(seq "$ROUNDS"); do
  for t in $targets; do
    read -r rps p50 p99 < <(measure "${t#*:}")
    printf '%-8s %-7s %12s %9s %9s\n' "$r" "${t%%:*}" "$rps" "$p50" "$p99"
  done
done
