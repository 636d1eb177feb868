#!/usr/bin/env bash
# Boots the convoy-systemd image (scripts/build-systemd-image.sh) with systemd
# as PID 1, for the real-systemd end-to-end tests.
#
#   systemd-container.sh start NAME [extra docker run args...]
#       Removes any container NAME, runs a new one detached, waits until
#       `systemctl is-system-running --wait` says running (or degraded: then
#       lists the failed units on stderr and still succeeds), prints the
#       container id as the last line of stdout. Exit 1 if systemd does not
#       come up within CONVOY_SYSTEMD_BOOT_TIMEOUT seconds (default 60); the
#       container's console log goes to stderr then.
#   systemd-container.sh stop NAME
#       `docker stop` (SIGRTMIN+3: systemd shuts down cleanly), then removes it.
#   systemd-container.sh flags
#       Prints the docker run flags, one a line, for a harness to replicate.
#   systemd-container.sh host-ip
#       Prints the address a process inside reaches the host at: the default
#       bridge's gateway. A coordinator on the host must listen on it (or on
#       0.0.0.0); inside, the name host.docker.internal resolves to it too.
#
# Why these flags (docs/systemd-in-docker.md): systemd needs a writable cgroup
# tree and CAP_SYS_ADMIN (mount namespaces for ProtectSystem=, PrivateTmp=
# and the image's convoy-init remount); --privileged is refused by this
# engine. Ports below 1024 are privileged again, as on a real host (Docker
# lets any process of a container bind them): the agent's unit must be
# given CAP_NET_BIND_SERVICE to run its proxy on 80 and 443.
# Env: CONVOY_SYSTEMD_IMAGE (default convoy-systemd:bookworm).
set -euo pipefail

image="${CONVOY_SYSTEMD_IMAGE:-convoy-systemd:bookworm}"
boot_timeout="${CONVOY_SYSTEMD_BOOT_TIMEOUT:-60}"

flags=(
  --cgroupns=private
  --cap-add SYS_ADMIN
  --sysctl net.ipv4.ip_unprivileged_port_start=1024
  --tmpfs /run
  --tmpfs /run/lock
  --tty
  --stop-signal SIGRTMIN+3
  --stop-timeout 20
  --add-host host.docker.internal:host-gateway
  --label io.convoy.test=systemd
)

usage() {
  sed -n '2,/^set -euo/p' "${BASH_SOURCE[0]}" | sed -e '$d' -e 's/^# \{0,1\}//' >&2
  exit 2
}

cmd_start() {
  [ $# -ge 1 ] || usage
  local name="$1"
  shift
  docker rm -f "$name" >/dev/null 2>&1 || true
  local id
  id="$(docker run -d --name "$name" --hostname "$name" "${flags[@]}" "$@" "$image")"
  local deadline=$((SECONDS + boot_timeout)) state=""
  while :; do
    if [ "$(docker inspect -f '{{.State.Running}}' "$id" 2>/dev/null)" != true ]; then
      echo "error: container $name exited while booting; its console:" >&2
      docker logs "$id" >&2 2>&1 || true
      return 1
    fi
    # Until dbus is up, systemctl cannot connect and prints nothing useful.
    state="$(timeout 10 docker exec "$id" systemctl is-system-running --wait 2>/dev/null || true)"
    case "$state" in
      running) break ;;
      degraded)
        echo "warning: systemd in $name is degraded; failed units:" >&2
        docker exec "$id" systemctl --failed --no-legend >&2 || true
        break
        ;;
    esac
    if [ "$SECONDS" -ge "$deadline" ]; then
      echo "error: systemd in $name not running after ${boot_timeout}s (state: ${state:-no bus}); its console:" >&2
      docker logs "$id" >&2 2>&1 || true
      return 1
    fi
    sleep 0.2
  done
  echo "$id"
}

cmd_stop() {
  [ $# -eq 1 ] || usage
  docker stop "$1" >/dev/null 2>&1 || true
  docker rm -f "$1" >/dev/null 2>&1 || true
}

cmd_host_ip() {
  local gw
  gw="$(docker network inspect bridge -f '{{range .IPAM.Config}}{{.Gateway}}{{end}}' 2>/dev/null || true)"
  if [ -z "$gw" ]; then
    # This engine leaves Gateway out of the default bridge's IPAM config.
    local dev
    dev="$(docker network inspect bridge -f '{{index .Options "com.docker.network.bridge.name"}}' 2>/dev/null || true)"
    gw="$(ip -4 -o addr show "${dev:-docker0}" 2>/dev/null | awk '{ split($4, a, "/"); print a[1]; exit }')"
  fi
  [ -n "$gw" ] || { echo "error: cannot find the docker bridge gateway" >&2; return 1; }
  echo "$gw"
}

case "${1:-}" in
  start) shift; cmd_start "$@" ;;
  stop) shift; cmd_stop "$@" ;;
  flags) printf '%s\n' "${flags[@]}" ;;
  host-ip) cmd_host_ip ;;
  *) usage ;;
esac
