#!/bin/bash
# FACTS.md section 35: what zone-a (sync thread off, as rgwsync requires) tells zone-b without being
# asked: its metadata and data change notifications, POSTed to zone-b's endpoint in the period.
# Turns zone-b's debug_rgw to 20 for a few seconds (admin socket), makes one metadata change (a
# bucket) and one data change (an object) on zone-a, and prints the notifications zone-b received
# and the shards they named; then counts the POSTs of 10 s of idle.
# usage: LAB=/tmp/lab [ZONE=http://127.0.0.1:RGW_A_PORT] notify.sh
set -euo pipefail
S="python3 $(dirname "$0")/../s3req.py"; A=${ZONE:?ZONE=http://127.0.0.1:RGW_A_PORT}; : "${LAB:?}"
ASOK=$LAB/run/client.rgw.b.asok; LOG=$LAB/log/client.rgw.b.log
CEPH=(ceph); [ -f "$LAB/chroot" ] && CEPH=(chroot "$(cat "$LAB/chroot")" ceph)
"${CEPH[@]}" --admin-daemon "$ASOK" config set debug_rgw 20 >/dev/null
from=$(wc -l < "$LOG")
B=notify-$RANDOM$RANDOM
$S PUT "$A/$B" | head -1
$S -d "hello" PUT "$A/$B/k" | head -1
sleep 3
"${CEPH[@]}" --admin-daemon "$ASOK" config set debug_rgw 1 >/dev/null
echo "--- zone-b, the notifications of one bucket and one object:"
tail -n +"$from" "$LOG" | grep -E 'type=(data|metadata)&notify|Notify|updated shard|modified key|wakeup' | grep -v 'starting new request\|req done' | cut -c1-260 | head -40
from=$(wc -l < "$LOG")
sleep 10
echo "--- zone-b, notification POSTs in 10 s of idle: $(tail -n +"$from" "$LOG" | grep -c '&notify') ($(tail -n +"$from" "$LOG" | grep '&notify' | grep -c type=data) data)"
