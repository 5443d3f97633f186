#!/bin/bash
# FACTS.md section 29: a null delete marker zone-b declines over a delete marker (section 22) is laid when
# it replaces a null version written first with an epoch below the marker's; Suspended and Enabled buckets.
# usage: [B=zone-b url] null-marker-over-marker.sh   (the lab's system user; zone-b alone)
S="python3 $(dirname "$0")/../s3req.py"; Z=${B:-http://127.0.0.1:29002}; U=sync-system
M=mmmmmmmmmmmmmmmmmmmmmmmmmmmmmmm; V=vvvvvvvvvvvvvvvvvvvvvvvvvvvvvvv
ver() { $S -d "<VersioningConfiguration><Status>$2</Status></VersioningConfiguration>" PUT "$Z/$1?versioning" | head -1 >/dev/null; }
lv() { $S GET "$Z/$1?versions&format=json" | tail -n +2 | python3 -c '
import sys,re
for m in re.finditer(r"\"(Version|DeleteMarker)\":\{\"Key\":\"([^\"]*)\",\"VersionedEpoch\":(\d+).*?\"VersionId\":\"([^\"]*)\",\"IsLatest\":(\w+)", sys.stdin.read()):
    print("    ", m.group(1), m.group(2), m.group(4), "epoch="+m.group(3), "latest="+m.group(5))'; }
for state in Suspended Enabled; do
for tmpep in 6 5; do
B=w22-$RANDOM; $S PUT $Z/$B | head -1 >/dev/null; ver $B Enabled
$S -d one PUT "$Z/$B/k?rgwx-uid=$U&rgwx-version-id=$V&rgwx-versioned-epoch=2&versionId=$V" | head -1 >/dev/null
$S DELETE "$Z/$B/k?rgwx-uid=$U&rgwx-version-id=$M&rgwx-versioned-epoch=6" | head -1 >/dev/null
ver $B $state
echo "zone-b $B ($state): V epoch 2, named marker M epoch 6 current; null marker epoch 7 directly:"
echo "   $($S -i DELETE "$Z/$B/k?rgwx-uid=$U&rgwx-version-id=null&rgwx-versioned-epoch=7" | grep -iE '^HTTP|version-id|delete-marker' | tr -d '\r' | tr '\n' ' ')"
lv $B
echo "  then a temporary null version epoch $tmpep, then the null marker epoch 7:"
echo "   PUT: $($S -i -d '' PUT "$Z/$B/k?rgwx-uid=$U&rgwx-version-id=null&rgwx-versioned-epoch=$tmpep" | grep -iE '^HTTP|version-id' | tr -d '\r' | tr '\n' ' ')"
lv $B
echo "   DEL: $($S -i DELETE "$Z/$B/k?rgwx-uid=$U&rgwx-version-id=null&rgwx-versioned-epoch=7" | grep -iE '^HTTP|version-id|delete-marker' | tr -d '\r' | tr '\n' ' ')"
lv $B
done; done
