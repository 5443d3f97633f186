#!/usr/bin/env bash
# chroot.sh RELEASE DIR: make DIR a Debian chroot with the Ceph RELEASE's
# packages (reef: Debian trixie, Ceph 18.2; tentacle: Debian sid, Ceph 20.2),
# once: a ready chroot (DIR/.rgwsync-ready) is kept and reused. Mounts /proc
# and /dev into it (left mounted: several labs may use one chroot). The lab's
# daemons run inside it, bound to 127.0.0.1 like the host's; everything else
# (the binaries under test) runs outside. About a minute and a half on a
# fresh machine; needs root, debootstrap (installed here) and deb.debian.org.
set -euo pipefail
REL=${1:?release (reef|tentacle)} CH=${2:?chroot directory}
case "$REL" in
  reef) SUITE=trixie ;;
  tentacle) SUITE=sid ;;
  *) echo "chroot.sh: no chroot for release $REL (want reef or tentacle)" >&2; exit 2 ;;
esac
say() { echo "chroot.sh: $*" >&2; }
mounts() {
  mkdir -p "$CH/proc" "$CH/dev"
  mountpoint -q "$CH/proc" || mount --bind /proc "$CH/proc"
  mountpoint -q "$CH/dev" || mount --bind /dev "$CH/dev"
}
if [ -f "$CH/.rgwsync-ready" ]; then mounts; exit 0; fi
[ "$(id -u)" = 0 ] || { say "building $CH needs root"; exit 1; }
command -v debootstrap >/dev/null || { say "installing debootstrap"; apt-get install -y --no-install-recommends debootstrap >&2; }
if [ ! -x "$CH/usr/bin/apt-get" ]; then
  say "debootstrap $SUITE into $CH (Ceph $REL)"
  debootstrap --variant=minbase "$SUITE" "$CH" http://deb.debian.org/debian >&2
fi
mounts
# Package scripts must not try to start services (no systemd in a chroot).
printf '#!/bin/sh\nexit 101\n' > "$CH/usr/sbin/policy-rc.d"
chmod +x "$CH/usr/sbin/policy-rc.d"
# sid's Release file can be past its Valid-Until on a machine with an old clock.
chroot "$CH" apt-get -o Acquire::Check-Valid-Until=false update >&2
chroot "$CH" env DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends \
  ceph-mon ceph-osd radosgw ceph-common python3 curl procps >&2
chroot "$CH" dpkg --configure -a >&2
chroot "$CH" radosgw --version >&2
touch "$CH/.rgwsync-ready"
say "ready: $CH"
