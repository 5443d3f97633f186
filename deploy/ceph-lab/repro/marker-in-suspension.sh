#!/bin/bash
# FACTS.md section 25: a delete marker with its own id (rgwx-version-id) laid while zone-b's bucket has
# versioning suspended, and while it is enabled.
# usage: [Z=zone-b url] marker-in-suspension.sh [BUCKET_PREFIX]   (the lab's system user; zone-b alone)
S="python3 $(dirname "$0")/../s3req.py"; Z=${Z:-${B:-http://127.0.0.1:29002}}; P=${1:-mis}; U=sync-system
V1=aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa; M2=mmmmmmmmmmmmmmmmmmmmmmmmmmmmmmm
ver() { $S -d "<VersioningConfiguration><Status>$2</Status></VersioningConfiguration>" PUT "$Z/$1?versioning" | head -1 >/dev/null; }
lv() { $S GET "$Z/$1?versions&format=json" | tail -n +2 | python3 -c '
import sys,re
for m in re.finditer(r"\"(Version|DeleteMarker)\":\{\"Key\":\"([^\"]*)\",\"VersionedEpoch\":(\d+).*?\"VersionId\":\"([^\"]*)\",\"IsLatest\":(\w+)", sys.stdin.read()):
    print("   ", m.group(1), m.group(2), m.group(4), "epoch="+m.group(3), "latest="+m.group(5))'; }
put() { echo "  PUT $2 ($3):"; $S -i -d "$2" PUT "$Z/$1/k?rgwx-uid=$U&$3" | grep -iE '^HTTP|version-id' | sed 's/^/    /'; }
marker() { echo "  DELETE k ($2):"; $S -i DELETE "$Z/$1/k?rgwx-uid=$U&$2" | grep -iE '^HTTP|version-id|delete-marker' | sed 's/^/    /'; }
for state in Suspended Enabled; do
  B=$P-$RANDOM; $S PUT "$Z/$B" | head -1 >/dev/null; ver $B Enabled
  echo "zone-b $B: $V1 (epoch 2), a null version (epoch 3) written while suspended, then the bucket $state:"
  put $B v1 "versionId=$V1&rgwx-version-id=$V1&rgwx-versioned-epoch=2"
  ver $B Suspended; put $B null "rgwx-version-id=null&rgwx-versioned-epoch=3"; ver $B $state
  marker $B "rgwx-version-id=$M2&rgwx-versioned-epoch=4"
  lv $B
done
