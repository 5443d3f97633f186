#!/bin/bash
# FACTS.md section 24: a null version written into zone-b's versioning-enabled bucket while its bucket
# instance is put, for that write only, with versioning suspended (flags 6), then put back as it was.
# usage: [Z=zone-b url] null-in-suspension.sh [BUCKET_PREFIX]   (the lab's system user; zone-b alone)
S="python3 $(dirname "$0")/../s3req.py"; Z=${Z:-${B:-http://127.0.0.1:29002}}; P=${1:-nis}; U=sync-system
V1=aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa; V3=ccccccccccccccccccccccccccccccc
ver() { $S -d "<VersioningConfiguration><Status>$2</Status></VersioningConfiguration>" PUT "$Z/$1?versioning" | head -1 >/dev/null; }
status() { $S GET "$Z/$1?versioning" | tail -n +2 | sed -n 's/.*<Status>\(.*\)<\/Status>.*/\1/p'; }
lv() { $S GET "$Z/$1?versions&format=json" | tail -n +2 | python3 -c '
import sys,re
for m in re.finditer(r"\"(Version|DeleteMarker)\":\{\"Key\":\"([^\"]*)\",\"VersionedEpoch\":(\d+).*?\"VersionId\":\"([^\"]*)\",\"IsLatest\":(\w+)", sys.stdin.read()):
    print("   ", m.group(1), m.group(2), m.group(4), "epoch="+m.group(3), "latest="+m.group(5))'; }
put() { echo "  PUT $2 ($3) $4:"; $S -i -d "$2" PUT "$Z/$1/k?rgwx-uid=$U&$3" | grep -iE '^HTTP|version-id' | sed 's/^/    /'; }
get_meta() { $S GET "$Z/admin/metadata/$1?key=$2" | tail -n +2; }
put_meta() { $S -f "$3" PUT "$Z/admin/metadata/$1?key=$2" | head -1 | sed "s/^/  put $1 ($4): /"; }
T=$(mktemp -d); trap 'rm -rf $T' EXIT
B=$P-$RANDOM; $S PUT "$Z/$B" | head -1 >/dev/null; ver $B Enabled
put $B v1 "versionId=$V1&rgwx-version-id=$V1&rgwx-versioned-epoch=2" "(a version)"
ID=$(get_meta bucket $B | python3 -c 'import sys,json; print(json.load(sys.stdin)["data"]["bucket"]["bucket_id"])')
get_meta bucket.instance "$B:$ID" > $T/orig.json
python3 - $T/orig.json $T/susp.json <<'PY'
import json, sys
b = json.load(open(sys.argv[1])); print("  zone-b's instance flags:", b["data"]["bucket_info"]["flags"], "ver", b["ver"], "mtime", b["mtime"])
b["data"]["bucket_info"]["flags"] |= 4
json.dump(b, open(sys.argv[2], "w"))
PY
echo "zone-b $B (Enabled, $V1 at epoch 2); the instance put with flags 6, a null write, the instance put back:"
put_meta bucket.instance "$B:$ID" $T/susp.json "flags 6"; echo "  versioning: $(status $B)"
put $B "null in a suspension" "rgwx-version-id=null&rgwx-versioned-epoch=3" "(the null version)"
put_meta bucket.instance "$B:$ID" $T/orig.json "as it was"; echo "  versioning: $(status $B)"
get_meta bucket.instance "$B:$ID" > $T/after.json
python3 - $T/orig.json $T/after.json <<'PY'
import json, sys
a, b = (json.load(open(f)) for f in sys.argv[1:3])
print("  instance after, against before: ver", a["ver"], "->", b["ver"], "| mtime", a["mtime"], "->", b["mtime"],
      "| data equal:", a["data"] == b["data"])
PY
lv $B
put $B v3 "versionId=$V3&rgwx-version-id=$V3&rgwx-versioned-epoch=4" "(a version over it)"; lv $B
echo "  a real suspension (S3 PUT ?versioning), a null write over it (epoch 5), Enabled again:"
ver $B Suspended; put $B "second null" "rgwx-version-id=null&rgwx-versioned-epoch=5" "(replaces the null version)"; ver $B Enabled; lv $B
echo "  DELETE k?versionId=null (Enabled):"; $S -i DELETE "$Z/$B/k?versionId=null" | grep -iE '^HTTP' | sed 's/^/    /'; lv $B
C=$P-$RANDOM; $S PUT "$Z/$C" | head -1 >/dev/null; ver $C Enabled
echo "zone-b $C (Enabled), the null version written without a suspension, for comparison:"
put $C v1 "versionId=$V1&rgwx-version-id=$V1&rgwx-versioned-epoch=2" "(a version)"
put $C "null into the enabled bucket" "rgwx-version-id=null&rgwx-versioned-epoch=3" "(the null version)"; lv $C
