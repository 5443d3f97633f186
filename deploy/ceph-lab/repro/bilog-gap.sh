#!/bin/bash
# FACTS.md section 31: a bucket-index log's numbering (index_ver) has gaps without any trim: racing
# null writes and deletes of one key in a suspended bucket use numbers the gateway logs no entry for.
# usage: [A=zone-a url] [LAB=lab dir] bilog-gap.sh [BUCKET_PREFIX] [ROUNDS]   (the lab's system user)
S="python3 $(dirname "$0")/../s3req.py"; A=${A:-http://127.0.0.1:29001}; P=${1:-gap}; R=${2:-3}
ver() { $S -d "<VersioningConfiguration><Status>$2</Status></VersioningConfiguration>" PUT "$A/$1?versioning" | head -1 >/dev/null; }
B=$P-$RANDOM; $S PUT $A/$B | head -1 >/dev/null; ver $B Enabled; ver $B Suspended
echo "zone-a $B (suspended): $R rounds of 6 × (PUT k, DELETE k, DELETE k?versionId=null) at once"
for round in $(seq 1 $R); do
  for i in $(seq 1 6); do
    $S -d "v$i" PUT "$A/$B/k" >/dev/null & $S DELETE "$A/$B/k" >/dev/null & $S DELETE "$A/$B/k?versionId=null" >/dev/null &
  done
  wait
done
echo "  its bilog: each number missing between two entries (no trim was made):"
radosgw-admin -c ${LAB:-/tmp/rgwsync-dev-lab}/ceph.conf bilog list --bucket $B --max-entries 10000 2>/dev/null | python3 -c '
import json,sys
es=json.load(sys.stdin); prev=None; gaps=0
for e in es:
    if prev is not None and e["index_ver"]>prev["index_ver"]+1:
        gaps+=1; print("     ", prev["op_id"], prev["op"], "->", e["op_id"], e["op"])
    prev=e
print("     %d entries, %d gaps, numbered up to %d" % (len(es), gaps, es[-1]["index_ver"] if es else 0))'
