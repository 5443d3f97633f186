// Package rgwobj reads objects from the source gateway and writes faithful
// copies into the destination gateway, as a system user over the S3 API
// signed with SigV4 (aws-sdk-go-v2 signer on plain net/http requests: the
// rgwx-* system extensions do not fit the s3 client).
//
// Source side: Stat (every attribute a copy needs, in one request for an
// object with the default ACL), Get (ranged reads), ListShard (one bucket
// index shard, as Ceph's own full data sync lists it) and DataLogShard (the
// data-log shard that logs a bucket index shard).
//
// Destination side: Put, PutMultipart (same part boundaries, hence the same
// "-N" ETag), Delete, PutDeleteMarker, PutACL and Head. Writes carry
// rgwx-uid=<owner> so the copy belongs to the source's owner, and, on
// versioned buckets, rgwx-version-id/rgwx-versioned-epoch so it keeps the
// source's version ids and their order. The gateway does not keep mtime:
// compare copies by ETag, size and version id.
//
// What the gateway (Ceph 16.2.15) does, with the requests and answers that
// show it, is in FACTS.md beside this file.
package rgwobj
