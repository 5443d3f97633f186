#!/bin/bash
# FACTS.md section 32: zone-b's index after a bucket instance with another num_shards is put onto an instance it has
# (a Reef/Tentacle reshard keeps the instance). usage: [A=zone-a] [B=zone-b] [RA=radosgw-admin -c …] tentacle-reshard-layout.sh change|keep
S="python3 $(dirname "$0")/../s3req.py"; A=${A:-http://127.0.0.1:29011}; Z=${B:-http://127.0.0.1:29012}; RA="${RA:-/tmp/rgwsync-tent-lab/bin/radosgw-admin -c /tmp/rgwsync-tent-lab/ceph.conf}"
keep=$1; B=lp$keep-$RANDOM
$S PUT $A/$B | head -1 >/dev/null
ID=$($S GET "$A/admin/metadata/bucket?key=$B" | tail -n +2 | python3 -c 'import json,sys;print(json.load(sys.stdin)["data"]["bucket"]["bucket_id"])')
$S GET "$A/admin/metadata/bucket.instance?key=$B:$ID" | tail -n +2 > /tmp/inst0.json
$S GET "$A/admin/metadata/bucket?key=$B" | tail -n +2 > /tmp/ep.json
$S -f /tmp/inst0.json PUT "$Z/admin/metadata/bucket.instance?key=$B:$ID" | head -1
$S -f /tmp/ep.json PUT "$Z/admin/metadata/bucket?key=$B" | head -1
for i in $(seq 1 12); do $S -d x$i PUT "$Z/$B/k$i" | head -1 > /dev/null; done
$RA bucket reshard --bucket $B --num-shards 3 --yes-i-really-mean-it >/dev/null 2>&1
$S GET "$A/admin/metadata/bucket.instance?key=$B:$ID" | tail -n +2 > /tmp/inst1.json
if [ "$keep" = keep ]; then python3 - <<'P'
import json; b=json.load(open("/tmp/inst1.json")); b["data"]["bucket_info"]["num_shards"]=11; json.dump(b,open("/tmp/inst1.json","w"))
P
fi
echo "put instance with num_shards $(grep -o '"num_shards": *[0-9]*' /tmp/inst1.json): $($S -f /tmp/inst1.json PUT "$Z/admin/metadata/bucket.instance?key=$B:$ID" | head -1)"
echo "zone-b info: $($S GET "$Z/admin/log?type=bucket-index&bucket-instance=$B:$ID:0&info" | tail -1 | grep -o '"generations.*')"
for i in $(seq 1 12); do $S DELETE "$Z/$B/k$i" | head -1 > /dev/null; done
echo "zone-b listing after deleting all 12: $($S GET "$Z/$B?format=json" | tail -n +2 | grep -o '"Key":"[^"]*"' | tr '\n' ' ')"
