#!/bin/bash
# FACTS.md section 30: a null version written into a key that was emptied (its null marker removed) on the
# source, and on zone-b with and without that removal applied first.
# usage: [A=zone-a url] [B=zone-b url] null-after-emptied.sh   (the lab's system user)
S="python3 $(dirname "$0")/../s3req.py"; A=${A:-http://127.0.0.1:29001}; Z=${B:-http://127.0.0.1:29002}; U=sync-system
V=vvvvvvvvvvvvvvvvvvvvvvvvvvvvvvv
ver() { $S -d "<VersioningConfiguration><Status>$3</Status></VersioningConfiguration>" PUT "$1/$2?versioning" | head -1 >/dev/null; }
lv() { $S GET "$1/$2?versions&format=json" | tail -n +2 | python3 -c '
import sys,re
n=0
for m in re.finditer(r"\"(Version|DeleteMarker)\":\{\"Key\":\"([^\"]*)\",\"VersionedEpoch\":(\d+).*?\"VersionId\":\"([^\"]*)\",\"IsLatest\":(\w+)", sys.stdin.read()):
    n+=1; print("    ", m.group(1), m.group(2), m.group(4), "epoch="+m.group(3), "latest="+m.group(5))
n or print("     (none)")'; }
B=fo-$RANDOM; $S PUT $A/$B | head -1 >/dev/null; ver $A $B Enabled; ver $A $B Suspended
echo "zone-a $B (S3, suspended): PUT k, DELETE k, DELETE k?versionId=null, PUT k, then Enabled, PUT k:"
$S -d a PUT $A/$B/k | head -1 >/dev/null; $S DELETE $A/$B/k | head -1 >/dev/null; lv $A $B
$S DELETE "$A/$B/k?versionId=null" | head -1 >/dev/null; echo "  emptied:"; lv $A $B
$S -d b PUT $A/$B/k | head -1 >/dev/null; echo "  null again:"; lv $A $B
ver $A $B Enabled; $S -d c PUT $A/$B/k | head -1 >/dev/null; echo "  then a version:"; lv $A $B
for removal in yes no; do
B=fo-$RANDOM; $S PUT $Z/$B | head -1 >/dev/null; ver $Z $B Enabled; ver $Z $B Suspended
echo "zone-b $B (system, suspended): null marker epoch 2, removal applied: $removal, plain null PUT, Enabled, V epoch 2:"
$S DELETE "$Z/$B/k?rgwx-uid=$U&rgwx-version-id=null&rgwx-versioned-epoch=2" | head -1 >/dev/null
[ $removal = yes ] && $S DELETE "$Z/$B/k?rgwx-uid=$U&versionId=null&rgwx-versioned-epoch=3" | head -1 >/dev/null
$S -d b PUT "$Z/$B/k?rgwx-uid=$U&rgwx-version-id=null" | head -1 >/dev/null; lv $Z $B
ver $Z $B Enabled; $S -d c PUT "$Z/$B/k?rgwx-uid=$U&rgwx-version-id=$V&rgwx-versioned-epoch=2&versionId=$V" | head -1 >/dev/null; lv $Z $B
done
