// Package rgwadmin is the client of the Ceph RADOS Gateway admin API that
// rgwsync replicates with: the metadata, data and bucket-index logs (list,
// info, trim), the metadata store (list, get, put, delete), the mdlog shard
// locks the appliers use as leases, and the realm's period (to learn zone ids).
//
// Every request is signed with AWS SigV4 (aws-sdk-go-v2's signer, service
// "s3") by a system user. The signer also writes the query string that goes
// on the wire, so the canonical query it signs is byte for byte the one the
// gateway rebuilds from the request; keys with ':', '$' or '/' need nothing
// special from callers.
//
// Errors name the operation. Answers of the gateway that callers branch on
// are sentinels reachable with errors.Is through *GatewayError: ErrNotFound
// (404), ErrLocked (423) and ErrAuth (rejected keys). A 2xx answer that is not
// the expected JSON is a *DecodeError. Only 5xx answers and connection errors
// are retried, in one place (Client.do), with capped jittered backoff; a
// retried DELETE or unlock whose first attempt did reach the gateway ends in
// ErrNotFound, which callers of idempotent deletes treat as success.
//
// What radosgw 16.2.15 does that shapes this client (measured on the lab):
//
//   - GET or DELETE /admin/log?type=data&id=N with N >= the data log's shard
//     count aborts the whole radosgw process; a negative id hangs the
//     request. The client learns the shard count once and refuses such ids
//     (ErrBadShard).
//   - An mdlog trim removes at most 1000 entries per call and answers 500
//     UnknownError when it removed none. TrimMDLog repeats the call and
//     checks with a listing, so trimming is complete and idempotent.
//   - The beast frontend writes an answer's headers and body as two segments
//     with Nagle on (unless "tcp_nodelay=1" is in rgw frontends), so each
//     answer waits for a delayed ACK: ~40 ms per call. The default transport
//     asks Linux for quick ACKs, which brings a call back to ~1 ms.
//   - update-by-version never creates a missing key (see UpdateByVersion),
//     and update-by-timestamp of a missing bucket.instance crashes the
//     gateway (PutMetadata refuses it).
package rgwadmin
