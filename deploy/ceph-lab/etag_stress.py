#!/usr/bin/env python3
"""Measurement of FACTS.md section 18: 4 writers on 4 keys of a versioned bucket (puts, tag/untag/ACL
changes, deletes), then the versions listed without an ETag.
usage: etag_stress.py BUCKET OPS_PER_WRITER [toggle]   (env ZONE_A, default http://127.0.0.1:29001)"""
import sys, random, threading, re, time
sys.path.insert(0, __import__("os").path.dirname(__file__))
import s3req
A = __import__("os").environ.get("ZONE_A", "http://127.0.0.1:29001")
B = sys.argv[1]; N = int(sys.argv[2]); toggles = len(sys.argv) > 3
s3req.request("PUT", f"{A}/{B}")
s3req.request("PUT", f"{A}/{B}?versioning", body=b"<VersioningConfiguration><Status>Enabled</Status></VersioningConfiguration>")
keys = [f"k{i}" for i in range(4)]
log = []
lock = threading.Lock()
def versions():
    st, h, body = s3req.request("GET", f"{A}/{B}?versions")
    out = []
    for m in re.finditer(r"<(Version|DeleteMarker)>(.*?)</\1>", body.decode()):
        b = m.group(2); g = lambda t: (re.search("<%s>(.*?)</%s>" % (t, t), b) or [None, None])[1]
        out.append((m.group(1), g("Key"), g("VersionId"), g("IsLatest"), g("ETag"), g("Size")))
    return out
def worker(seed):
    rng = random.Random(seed)
    for i in range(N):
        k = rng.choice(keys); r = rng.random()
        vs = [v for v in versions() if v[1] == k and v[0] == "Version"] if r > 0.3 else []
        vid = rng.choice(vs)[2] if vs else None
        q = f"&versionId={vid}" if vid and rng.random() < 0.8 else ""
        if r < 0.3:
            st = s3req.request("PUT", f"{A}/{B}/{k}", body=bytes(rng.randrange(100, 2000)))[0]; op = "put"
        elif r < 0.55:
            st = s3req.request("PUT", f"{A}/{B}/{k}?tagging{q}", body=b"<Tagging><TagSet><Tag><Key>t</Key><Value>v%d</Value></Tag></TagSet></Tagging>" % i)[0]; op = "tag"
        elif r < 0.7:
            st = s3req.request("DELETE", f"{A}/{B}/{k}?tagging{q}")[0]; op = "deltag"
        elif r < 0.85:
            st = s3req.request("PUT", f"{A}/{B}/{k}?acl{q}", headers={"x-amz-acl": rng.choice(["public-read", "private"])})[0]; op = "acl"
        elif r < 0.92 and toggles:
            st = s3req.request("PUT", f"{A}/{B}?versioning", body=("<VersioningConfiguration><Status>%s</Status></VersioningConfiguration>" % rng.choice(["Enabled","Suspended"])).encode())[0]; op="toggle"
        else:
            st = s3req.request("DELETE", f"{A}/{B}/{k}" + (f"?versionId={vid}" if vid and rng.random() < 0.5 else ""))[0]; op = "delete"
        with lock:
            log.append((time.time(), seed, op, k, q, st))
ts = [threading.Thread(target=worker, args=(s,)) for s in range(4)]
[t.start() for t in ts]; [t.join() for t in ts]
bad = [v for v in versions() if v[0] == "Version" and (v[4] in (None, "", "&quot;&quot;"))]
print("ops", len(log), "versions", len(versions()), "without etag", len(bad))
for b in bad: print(b)
import json; json.dump(log, open(f"etag-{B}.log.json", "w"))
