package main

// rgwsync-applier resync -older-than: the object versions the source last
// modified before a point in time, read from the source's listings through
// the exporter and queued for resync a page at a time (memory does not grow
// with the bucket).

import (
	"context"
	"fmt"
	"io"
	"strings"
	"time"

	v1 "github.com/rgwsync/rgwsync/gen/rgwsync/v1"
)

// olderThanBatch is the number of versions queued by one Resync call.
const olderThanBatch = 1000

// resyncOlderThan queues every version of buckets (none: every bucket keep
// accepts) whose source mtime is before cutoff; it returns how many were
// queued out of how many were listed.
func resyncOlderThan(ctx context.Context, src v1.SourceServiceClient, st v1.StatusServiceClient, dest string, buckets []string,
	keep func(section, key string) bool, cutoff time.Time, progress io.Writer) (queued, listed int, err error) {
	if len(buckets) == 0 {
		if buckets, err = replicatedBuckets(ctx, src, keep); err != nil {
			return 0, 0, err
		}
	}
	var batch []*v1.ResyncObject
	flush := func() error {
		if len(batch) == 0 {
			return nil
		}
		if _, err := st.Resync(ctx, &v1.ResyncRequest{Destination: dest, Objects: batch}); err != nil {
			return fmt.Errorf("queue %d version(s): %w", len(batch), err)
		}
		queued += len(batch)
		batch = batch[:0]
		return nil
	}
	for _, b := range buckets {
		req := &v1.ListObjectVersionsRequest{Bucket: strings.Replace(b, "/", ":", 1), Max: olderThanBatch}
		for {
			page, err := src.ListObjectVersions(ctx, req)
			if err != nil {
				return queued, listed, fmt.Errorf("list bucket %s on the source: %w", b, err)
			}
			for _, v := range page.GetVersions() {
				listed++
				if v.GetMtime() != nil && v.GetMtime().AsTime().Before(cutoff) {
					batch = append(batch, &v1.ResyncObject{Bucket: b, Key: v.GetKey(), VersionId: v.GetVersionId()})
				}
				if len(batch) >= olderThanBatch {
					if err := flush(); err != nil {
						return queued, listed, err
					}
				}
			}
			if !page.GetTruncated() {
				break
			}
			req.KeyMarker, req.VersionIdMarker = page.GetNextKeyMarker(), page.GetNextVersionIdMarker()
		}
		if progress != nil {
			fmt.Fprintf(progress, "resync: bucket %s listed: %d version(s) listed, %d queued so far\n", b, listed, queued+len(batch))
		}
	}
	return queued, listed, flush()
}

// replicatedBuckets lists the source's buckets the exporter replicates.
func replicatedBuckets(ctx context.Context, src v1.SourceServiceClient, keep func(section, key string) bool) ([]string, error) {
	var out []string
	req := &v1.ListMetadataKeysRequest{Section: "bucket"}
	for {
		page, err := src.ListMetadataKeys(ctx, req)
		if err != nil {
			return nil, fmt.Errorf("list the source's buckets: %w", err)
		}
		for _, k := range page.GetKeys() {
			if keep == nil || keep("bucket", k) {
				out = append(out, k)
			}
		}
		if !page.GetTruncated() || page.GetNextMarker() == "" {
			return out, nil
		}
		req.Marker = page.GetNextMarker()
	}
}
