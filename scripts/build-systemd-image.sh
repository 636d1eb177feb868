#!/usr/bin/env bash
# Builds the image the real-systemd tests boot: a Debian bookworm rootfs made
# with debootstrap (systemd as PID 1, dbus, journald) imported with
# `docker import`, since no image registry can be reached here.
#
# Tags `convoy-systemd:src-HASH` (HASH over this script) and
# `convoy-systemd:bookworm`. Does nothing but re-tag when the hash tag is
# already there. Prints the hash tag as its last line of stdout.
#
# The Debian mirror is read at run time from this machine's apt configuration
# (deb822 `URIs:` in /etc/apt/sources.list.d/*.sources, or `deb` lines in
# /etc/apt/sources.list and /etc/apt/sources.list.d/*.list); it is never
# written in the repository. CONVOY_DEBIAN_MIRROR overrides it.
#
# Needs root (or sudo) for debootstrap and a running Docker Engine. Installs
# debootstrap with apt when it is missing. Boot the image with
# scripts/systemd-container.sh (docs/systemd-in-docker.md has the flags).
#
# Env: CONVOY_SYSTEMD_IMAGE (default convoy-systemd), CONVOY_DEBIAN_MIRROR.
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
repo="${CONVOY_SYSTEMD_IMAGE:-convoy-systemd}"
suite=bookworm

hash="$(sha256sum scripts/build-systemd-image.sh | cut -c1-16)"
tag="$repo:src-$hash"

if docker image inspect "$tag" >/dev/null 2>&1; then
  docker tag "$tag" "$repo:$suite"
  echo "$tag"
  exit 0
fi

sudo=""
[ "$(id -u)" -ne 0 ] && sudo="sudo"

# The first `deb` source of this machine that serves Debian's main archive
# (not -security / -updates / -backports): deb822 files first, then one-line.
find_mirror() {
  local f
  shopt -s nullglob
  for f in /etc/apt/sources.list.d/*.sources; do
    awk '
      function flush() {
        if (types ~ /(^| )deb( |$)/ && suites ~ /(^| )[a-z]+( |$)/ && uris != "") {
          split(uris, u, " "); print u[1]; found = 1; exit
        }
        types = ""; suites = ""; uris = ""
      }
      /^[ \t]*#/ { next }
      /^[ \t]*$/ { flush(); next }
      tolower($1) == "types:"  { $1 = ""; types = $0 " " }
      tolower($1) == "suites:" { $1 = ""; suites = $0 " " }
      tolower($1) == "uris:"   { $1 = ""; uris = $0 }
      END { if (!found) flush() }
    ' "$f"
  done
  for f in /etc/apt/sources.list /etc/apt/sources.list.d/*.list; do
    [ -f "$f" ] || continue
    # deb [options] URI SUITE COMPONENTS...
    sed -e 's/#.*//' -e 's/\[[^]]*\]//' "$f" |
      awk '$1 == "deb" && $3 ~ /^[a-z]+$/ { print $2 }'
  done
}

mirror="${CONVOY_DEBIAN_MIRROR:-}"
if [ -z "$mirror" ]; then
  mirror="$(find_mirror | grep -E '^(https?|file)://' | head -n1 || true)"
fi
if [ -z "$mirror" ]; then
  echo "error: no Debian mirror found in /etc/apt/sources.list{,.d/}; set CONVOY_DEBIAN_MIRROR" >&2
  exit 1
fi

if ! command -v debootstrap >/dev/null 2>&1 && [ ! -x /usr/sbin/debootstrap ]; then
  echo "installing debootstrap" >&2
  $sudo apt-get update >&2
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y --no-install-recommends debootstrap >&2
fi
debootstrap="$(command -v debootstrap || echo /usr/sbin/debootstrap)"

work="$(mktemp -d)"
cleanup() { $sudo rm -rf --one-file-system "$work"; }
trap cleanup EXIT
rootfs="$work/rootfs"

echo "building $tag (debootstrap $suite, minbase)" >&2
started=$SECONDS
# systemd ships journald and systemd-analyze; dbus is the system bus;
# the rest is what the tests use inside (ip, ps, TLS roots).
$sudo "$debootstrap" --variant=minbase \
  --include=systemd,systemd-sysv,dbus,ca-certificates,iproute2,procps \
  "$suite" "$rootfs" "$mirror" >&2

# Units that make no sense in a container (no consoles, no udev, no kernel
# modules, read-only /sys and /proc/sys) are masked so the boot is clean:
# `systemctl is-system-running` must say `running`, not `degraded`.
masked=(
  getty@.service serial-getty@.service console-getty.service getty.target
  systemd-udevd.service systemd-udev-trigger.service systemd-udev-settle.service
  systemd-udevd-control.socket systemd-udevd-kernel.socket
  systemd-modules-load.service systemd-sysctl.service
  systemd-remount-fs.service systemd-firstboot.service
  systemd-hwdb-update.service systemd-random-seed.service
  sys-kernel-config.mount sys-kernel-debug.mount sys-kernel-tracing.mount
  sys-fs-fuse-connections.mount dev-hugepages.mount dev-mqueue.mount
  proc-sys-fs-binfmt_misc.automount systemd-binfmt.service
  systemd-pstore.service systemd-logind.service
  apt-daily.timer apt-daily-upgrade.timer e2scrub_all.timer fstrim.timer
)
for unit in "${masked[@]}"; do
  $sudo ln -sf /dev/null "$rootfs/etc/systemd/system/$unit"
done
# No display: boot to multi-user.target, not graphical.target.
$sudo ln -sf /lib/systemd/system/multi-user.target "$rootfs/etc/systemd/system/default.target"

# PID 1 is a small wrapper that makes the container's own cgroup tree
# writable for systemd, then execs /sbin/init. Docker mounts the cgroup file
# systems read-only unless --privileged, which this engine may refuse; with
# --cgroupns=private and CAP_SYS_ADMIN the bind remount only affects the
# container's own namespace-rooted view (cgroup v1: the name=systemd
# hierarchy; cgroup v2: /sys/fs/cgroup). Outside a private cgroup namespace it
# touches nothing. docs/systemd-in-docker.md explains.
$sudo tee "$rootfs/usr/local/sbin/convoy-init" >/dev/null <<'INIT'
#!/bin/sh
# Only in a private cgroup namespace (our cgroup is "/").
if grep -qx '0::/' /proc/self/cgroup || grep -q '^[0-9]*:name=systemd:/$' /proc/self/cgroup; then
  for m in /sys/fs/cgroup/systemd /sys/fs/cgroup; do
    if awk -v m="$m" '$5 == m && $6 ~ /(^|,)ro(,|$)/ { for (i = 7; i < NF; i++) if ($i == "-") { if ($(i+1) ~ /^cgroup2?$/) f = 1; break } } END { exit !f }' /proc/self/mountinfo; then
      mount -o remount,rw,bind "$m" 2>/dev/null || echo "convoy-init: could not make $m writable (needs CAP_SYS_ADMIN)" >&2
      break
    fi
  done
fi
# Mount events propagate between namespaces, as on a booted host (systemd
# makes / shared at boot, but not in a container): systemd sets a unit's
# credentials up in a private namespace and moves them into
# /run/credentials, which the unit sees only through this propagation.
mount --make-rshared / 2>/dev/null || echo "convoy-init: could not make / shared (needs CAP_SYS_ADMIN)" >&2
exec /sbin/init "$@"
INIT
$sudo chmod 0755 "$rootfs/usr/local/sbin/convoy-init"

# A fresh machine id per container (systemd writes one at boot when empty),
# a neutral hostname, no apt sources (nothing is installed inside at run
# time, and the host's mirror must not travel in the image).
$sudo truncate -s 0 "$rootfs/etc/machine-id"
$sudo rm -f "$rootfs/var/lib/dbus/machine-id"
echo convoy-systemd | $sudo tee "$rootfs/etc/hostname" >/dev/null
$sudo rm -f "$rootfs/etc/apt/sources.list"
$sudo rm -rf "$rootfs"/etc/apt/sources.list.d/*

# Journald keeps the journal in memory only, and forwards nothing to a
# console that does not exist.
$sudo mkdir -p "$rootfs/etc/systemd/journald.conf.d"
printf '[Journal]\nStorage=volatile\nForwardToConsole=no\n' |
  $sudo tee "$rootfs/etc/systemd/journald.conf.d/convoy.conf" >/dev/null

# Smaller: no package caches, docs, man pages or locales.
$sudo rm -rf "$rootfs"/var/cache/apt/archives/*.deb "$rootfs"/var/cache/apt/*.bin \
  "$rootfs"/var/lib/apt/lists/* "$rootfs"/usr/share/doc/* "$rootfs"/usr/share/man/* \
  "$rootfs"/usr/share/info/* "$rootfs"/var/log/*.log
$sudo find "$rootfs/usr/share/locale" -mindepth 1 -maxdepth 1 ! -name 'locale.alias' \
  -exec rm -rf {} + 2>/dev/null || true

# Docker 20.10's `import --change` takes CMD/ENV but not STOPSIGNAL, so the
# imported image gets one more (empty) layer from the legacy builder, which
# builds FROM a local image without fetching anything.
base="$repo:import-$hash"
$sudo tar --numeric-owner -C "$rootfs" -c . |
  docker import \
    --change 'CMD ["/usr/local/sbin/convoy-init"]' \
    --change 'ENV container=docker' \
    - "$base" >&2
printf '%s\n' "FROM $base" 'STOPSIGNAL SIGRTMIN+3' \
  'LABEL io.convoy.test-image=true' "LABEL io.convoy.systemd-image-hash=$hash" \
  | DOCKER_BUILDKIT=0 docker build --quiet -t "$tag" - >&2
docker rmi "$base" >/dev/null
docker tag "$tag" "$repo:$suite"
# Older builds of this script are of no further use (an image a container
# still uses stays).
docker image ls --format '{{.Repository}}:{{.Tag}}' "$repo" |
  grep -E ":src-" | grep -vxF "$tag" | xargs -r docker rmi >/dev/null 2>&1 || true
echo "built $tag in $((SECONDS - started)) s" >&2
echo "$tag"
