#!/usr/bin/env bash
# with-lab.sh CMD [ARG...]: boot a lab of its own (start.sh), run CMD against it
# with the RGWSYNC_LAB_* variables that internal/testkit/labtest reads, then stop and
# wipe the lab whatever happened (stop.sh --wipe signals only the lab's own
# recorded PIDs).  Exits with CMD's exit code (1 if the lab did not boot).
# When CMD fails, the tail of the gateway logs is printed and $LAB/log is
# copied to $LOGS_OUT first, since --wipe removes it.
#
# Env overrides (the defaults keep clear of `make lab-up`'s lab and of the
# stock /tmp/ceph-lab on :8001/:8002):
#   LAB=/tmp/rgwsync-test-lab MON_PORT=26789 RGW_A_PORT=28001 RGW_B_PORT=28002
#   LOGS_OUT=<repo>/.tmp/lab-logs  and everything start.sh reads (SYS_AK, SYS_SK, ...)
set -euo pipefail

[ $# -gt 0 ] || { echo "usage: $0 CMD [ARG...]" >&2; exit 2; }

HERE=$(cd "$(dirname "$0")" && pwd)
ROOT=$(cd "$HERE/../.." && pwd)
export LAB=${LAB:-/tmp/rgwsync-test-lab}
export MON_PORT=${MON_PORT:-26789}
export RGW_A_PORT=${RGW_A_PORT:-28001}
export RGW_B_PORT=${RGW_B_PORT:-28002}
export SYS_AK=${SYS_AK:-SYSTEMACCESSKEY0001}
export SYS_SK=${SYS_SK:-SystemSecretKey0000000000000000000000001}
LOGS_OUT=${LOGS_OUT:-$ROOT/.tmp/lab-logs}

say() { echo "with-lab: $*" >&2; }

keep_logs() {  # print the gateways' last lines and copy $LAB/log out before the wipe
  [ -d "$LAB/log" ] || return 0
  local f
  for f in "$LAB"/log/client.rgw.a.log "$LAB"/log/client.rgw.b.log "$LAB"/log/rgw.a.out "$LAB"/log/rgw.b.out; do
    [ -s "$f" ] || continue
    echo "----- tail -n 30 $f" >&2
    tail -n 30 "$f" >&2
  done
  rm -rf "$LOGS_OUT"
  mkdir -p "$LOGS_OUT"
  cp -a "$LAB/log/." "$LOGS_OUT/"
  cp -a "$LAB/ceph.conf" "$LOGS_OUT/" 2>/dev/null || true
  say "lab logs copied to $LOGS_OUT"
}

# start.sh stops whatever lab $LAB holds; never take over one that another run
# (a second `make test` on this machine, say) is still using.
if [ -f "$LAB/pids" ]; then
  while read -r name pid start; do
    st=$(cat "/proc/$pid/stat" 2>/dev/null) || continue
    read -ra f <<< "${st##*) }"          # f[0] is stat field 3, so f[19] is field 22 (starttime)
    if [ "${f[19]}" = "$start" ]; then
      say "$LAB is in use ($name, pid $pid, still runs): choose another LAB and ports," \
          "or stop it with LAB=$LAB $HERE/stop.sh --wipe"
      exit 1
    fi
  done < "$LAB/pids"
fi

rc=1
finish() {
  trap - EXIT INT TERM
  [ "$rc" = 0 ] || keep_logs || true
  if "$HERE/stop.sh" --wipe >&2; then
    rm -rf "$LAB"   # also when start.sh failed and already stopped its daemons (no pids file, no wipe)
  else
    say "stop.sh failed: lab left in $LAB"
  fi
  exit "$rc"
}
trap finish EXIT
trap 'rc=130; exit' INT
trap 'rc=143; exit' TERM

say "booting a lab in $LAB (mon :$MON_PORT, zone-a :$RGW_A_PORT, zone-b :$RGW_B_PORT)"
if ! "$HERE/start.sh" >&2; then
  say "the lab did not boot"
  exit 1   # rc is still 1: finish keeps the logs and stops what start.sh left
fi

export RGWSYNC_LAB_DIR=$LAB
export RGWSYNC_LAB_ZONE_A=http://127.0.0.1:$RGW_A_PORT
export RGWSYNC_LAB_ZONE_B=http://127.0.0.1:$RGW_B_PORT
export RGWSYNC_LAB_ACCESS_KEY=$SYS_AK
export RGWSYNC_LAB_SECRET_KEY=$SYS_SK

say "running: $*"
set +e
"$@"
rc=$?
set -e
say "$1 exited with $rc"
exit "$rc"
