#!/bin/bash
# FACTS.md section 27: a versioned key whose every version is deleted, then a new delete marker: the
# source's epochs for the key start again; what zone-b does with the same ops and the source's epochs.
# usage: [A=zone-a url] [B=zone-b url] emptied-key.sh [BUCKET_PREFIX]   (the lab's system user)
S="python3 $(dirname "$0")/../s3req.py"; A=${A:-http://127.0.0.1:29001}; Z=${B:-http://127.0.0.1:29002}; P=${1:-ek}; U=sync-system
V1=aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa; V2=bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb; M=mmmmmmmmmmmmmmmmmmmmmmmmmmmmmmm
ver() { $S -d "<VersioningConfiguration><Status>$3</Status></VersioningConfiguration>" PUT "$1/$2?versioning" | head -1 >/dev/null; }
lv() { $S GET "$1/$2?versions&format=json" | tail -n +2 | python3 -c '
import sys,re
n=0
for m in re.finditer(r"\"(Version|DeleteMarker)\":\{\"Key\":\"([^\"]*)\",\"VersionedEpoch\":(\d+).*?\"VersionId\":\"([^\"]*)\",\"IsLatest\":(\w+)", sys.stdin.read()):
    n+=1; print("    ", m.group(1), m.group(2), m.group(4), "epoch="+m.group(3), "latest="+m.group(5))
n or print("     (no versions)")'; }
hd() { echo "    HEAD k: $($S -i HEAD "$1/$2/k" | grep -iE '^HTTP|x-amz-version-id|delete-marker' | tr -d '\r' | tr '\n' ' ')"; }
B=$P-$RANDOM; $S PUT $A/$B | head -1 >/dev/null; ver $A $B Enabled
echo "zone-a $B (S3): two versions, both deleted, then DELETE k (a marker):"
v1=$($S -i -d one PUT $A/$B/k | grep -i x-amz-version-id | cut -d' ' -f2 | tr -d '\r')
v2=$($S -i -d two PUT $A/$B/k | grep -i x-amz-version-id | cut -d' ' -f2 | tr -d '\r')
lv $A $B
$S DELETE "$A/$B/k?versionId=$v1" | head -1 >/dev/null; $S DELETE "$A/$B/k?versionId=$v2" | head -1 >/dev/null
echo "  emptied:"; lv $A $B
$S DELETE "$A/$B/k" | head -1 >/dev/null
echo "  after DELETE k:"; lv $A $B; hd $A $B
echo "  its bilog (op, instance, epoch):"
radosgw-admin -c ${LAB:-/tmp/rgwsync-dev-lab}/ceph.conf bilog list --bucket $B 2>/dev/null | python3 -c '
import json,sys
for e in json.load(sys.stdin): print("     ", e["op"], e["instance"] or "-", "epoch="+str(e["ver"]["epoch"]), e["state"])'
for delep in "4 5" "0 0"; do
B=$P-$RANDOM; $S PUT $Z/$B | head -1 >/dev/null; ver $Z $B Enabled
echo "zone-b $B (system): $V1 epoch 2, $V2 epoch 3, deleted (rgwx-versioned-epoch ${delep// /, }), then the marker $M epoch 2:"
$S -d one PUT "$Z/$B/k?rgwx-uid=$U&rgwx-version-id=$V1&rgwx-versioned-epoch=2" | head -1 >/dev/null
$S -d two PUT "$Z/$B/k?rgwx-uid=$U&rgwx-version-id=$V2&rgwx-versioned-epoch=3" | head -1 >/dev/null
set -- $delep; e1=""; e2=""; [ $1 != 0 ] && e1="&rgwx-versioned-epoch=$1"; [ $2 != 0 ] && e2="&rgwx-versioned-epoch=$2"
$S DELETE "$Z/$B/k?rgwx-uid=$U&versionId=$V1$e1" | head -1 >/dev/null; $S DELETE "$Z/$B/k?rgwx-uid=$U&versionId=$V2$e2" | head -1 >/dev/null
echo "  emptied:"; lv $Z $B
echo "  marker: $($S -i DELETE "$Z/$B/k?rgwx-uid=$U&rgwx-version-id=$M&rgwx-versioned-epoch=2" | grep -iE '^HTTP|version-id|delete-marker' | tr -d '\r' | tr '\n' ' ')"
lv $Z $B; hd $Z $B
done
