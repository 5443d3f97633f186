#!/bin/bash
# FACTS.md section 22: no delete marker over a key whose current entry is a delete marker, unless it
# replaces a null version — for rgwsync's system DELETE (rgwx-version-id) and for a plain S3 DELETE.
# usage: [A=zone-a url] [B=zone-b url] marker-over-marker.sh BUCKET_PREFIX
S="python3 $(dirname "$0")/../s3req.py"; A=${A:-http://127.0.0.1:29001}; Z=${B:-http://127.0.0.1:29002}; P=${1:-mom}; U=sync-system
N=9yZADrZa6AQ65qBNn0qb43r5-feu1Qb
ver() { $S -d "<VersioningConfiguration><Status>$3</Status></VersioningConfiguration>" PUT "$1/$2?versioning" | head -1 >/dev/null; }
lv() { $S GET "$1/$2?versions&format=json" | tail -n +2 | python3 -c '
import sys,re
for m in re.finditer(r"\"(Version|DeleteMarker)\":\{\"Key\":\"([^\"]*)\",\"VersionedEpoch\":(\d+).*?\"VersionId\":\"([^\"]*)\",\"IsLatest\":(\w+)", sys.stdin.read()):
    print("   ", m.group(1), m.group(2), m.group(4), "epoch="+m.group(3), "latest="+m.group(5))'; }
dm() { echo "  DELETE $2 rgwx-version-id=$3 epoch=$4:"; $S -i DELETE "$1/$2/k?rgwx-uid=$U&rgwx-version-id=$3&rgwx-versioned-epoch=$4" | grep -iE '^HTTP|version-id|delete-marker' | sed 's/^/    /'; }
for order in "null:3 $N:2" "$N:2 null:3"; do
  B=$P-$RANDOM; $S PUT $Z/$B | head -1 >/dev/null; ver $Z $B Enabled
  echo "zone-b $B, empty key, two markers ($order):"
  for m in $order; do dm $Z $B ${m%%:*} ${m##*:}; done; lv $Z $B
done
B=$P-$RANDOM; $S PUT $Z/$B | head -1 >/dev/null; ver $Z $B Enabled; ver $Z $B Suspended
echo "zone-b $B, the source's order: null version (Suspended), $N (Enabled), null marker (Suspended):"
$S -d v1 PUT "$Z/$B/k?rgwx-uid=$U&rgwx-version-id=null" | head -1 | sed 's/^/  PUT null: /'
ver $Z $B Enabled; dm $Z $B $N 2; ver $Z $B Suspended; dm $Z $B null 3; lv $Z $B
B=$P-$RANDOM; $S PUT $A/$B | head -1 >/dev/null; ver $A $B Enabled
echo "zone-a $B, S3: DELETE (Enabled) then DELETE (Suspended) on an empty key:"
$S -i DELETE "$A/$B/k" | grep -iE '^HTTP|version-id|delete-marker' | sed 's/^/    /'; ver $A $B Suspended
$S -i DELETE "$A/$B/k" | grep -iE '^HTTP|version-id|delete-marker' | sed 's/^/    /'; lv $A $B
