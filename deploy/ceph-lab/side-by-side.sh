#!/usr/bin/env bash
# side-by-side.sh NAME 'CMD' NAME 'CMD' ...: run the commands at once (each in
# bash), every output line prefixed with its NAME, and wait for all of them:
# none is cut short when another fails. Exits 0 when all passed, else 1 after
# naming each that failed and its exit code. `make test` runs the integration
# tests of two Ceph releases this way, each on a lab of its own.
set -uo pipefail
[ $# -ge 2 ] && [ $(( $# % 2 )) -eq 0 ] || { echo "usage: $0 NAME 'CMD' [NAME 'CMD' ...]" >&2; exit 2; }
declare -A name_of=()
while [ $# -gt 0 ]; do
  name=$1 cmd=$2; shift 2
  ( bash -c "$cmd" 2>&1 | sed -u "s/^/$name| /" ) &
  name_of[$!]=$name
done
rc=0 t0=$(date +%s)
while [ ${#name_of[@]} -gt 0 ]; do
  done_pid=
  wait -n -p done_pid "${!name_of[@]}"; r=$?
  [ -n "$done_pid" ] || { echo "side-by-side: wait failed ($r)" >&2; exit 1; }
  if [ "$r" -eq 0 ]; then
    echo "side-by-side: ${name_of[$done_pid]} passed in $(( $(date +%s) - t0 )) s"
  else
    rc=1
    echo "side-by-side: ${name_of[$done_pid]} FAILED (exit $r) after $(( $(date +%s) - t0 )) s" >&2
  fi
  unset "name_of[$done_pid]"
done
exit "$rc"
