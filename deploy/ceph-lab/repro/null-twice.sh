#!/bin/bash
# FACTS.md section 20: a null version written (as rgwsync writes one, system user, rgwx-version-id=null)
# while the bucket has versioning enabled, over an existing null version, is listed as a second "null".
# usage: [ZONE=url] [SECOND_ENABLED=1] null-twice.sh BUCKET Suspended
# usage: olh.sh BUCKET STATUS_AT_NULL_WRITES(Suspended|Enabled)  — replays k00303's zone-b requests
S="python3 $(dirname "$0")/../s3req.py"; A=${ZONE:-http://127.0.0.1:29001}; B=$1; ST=$2; U=sync-system
ver() { $S -d "<VersioningConfiguration><Status>$1</Status></VersioningConfiguration>" PUT "$A/$B?versioning" | head -1; }
lv() { $S GET "$A/$B?versions" | tail -n +2 | python3 -c '
import sys,re
x=sys.stdin.read()
for m in re.finditer(r"<(Version|DeleteMarker)>(.*?)</\1>", x):
    b=m.group(2); g=lambda t: (re.search("<%s>(.*?)</%s>"%(t,t), b) or [None,None])[1]
    print("  ",m.group(1), g("Key"), g("VersionId"), "latest="+g("IsLatest"), g("Size"))'; }
$S PUT $A/$B | head -1; ver Enabled; ver Suspended
[ "$ST" = Enabled ] && ver Enabled
$S -d "null-one" PUT "$A/$B/k?rgwx-uid=$U&rgwx-version-id=null" | head -1
[ -n "$SECOND_ENABLED" ] && ver Enabled || ver Suspended
$S -d "null-two" PUT "$A/$B/k?rgwx-uid=$U&rgwx-version-id=null" | head -1
echo "after null writes:"; lv
ver Enabled
$S -d "named-V" PUT "$A/$B/k?rgwx-uid=$U&rgwx-version-id=VVVVVVVVVVVVVVVVVVVVVVVVVVVVVVV&rgwx-versioned-epoch=2&versionId=VVVVVVVVVVVVVVVVVVVVVVVVVVVVVVV" | head -1
echo "after V:"; lv
$S DELETE "$A/$B/k?rgwx-uid=$U&rgwx-versioned-epoch=3&versionId=VVVVVVVVVVVVVVVVVVVVVVVVVVVVVVV" | head -1
echo "after delete V:"; lv
