package applier

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"sync"
	"testing"

	"github.com/stretchr/testify/require"

	v1 "github.com/rgwsync/rgwsync/gen/rgwsync/v1"
	"github.com/rgwsync/rgwsync/internal/rgwadmin"
	"github.com/rgwsync/rgwsync/internal/rgwlog"
)

// recordingDest records the metadata writes the applier sends zone-b.
type recordingDest struct {
	mu    sync.Mutex
	calls []string
	have  map[string][]byte // section:key -> the blob put last
}

func (d *recordingDest) PutMetadata(_ context.Context, section, key string, blob []byte, _ string) (rgwadmin.UpdateStatus, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.calls = append(d.calls, "put "+section+":"+key)
	if d.have == nil {
		d.have = map[string][]byte{}
	}
	d.have[section+":"+key] = blob
	return rgwadmin.UpdateStatus{Status: "applied", Applied: true}, nil
}

func (d *recordingDest) GetMetadata(_ context.Context, section, key string) ([]byte, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if b, ok := d.have[section+":"+key]; ok {
		return b, nil
	}
	return nil, fmt.Errorf("recordingDest has no %s:%s: %w", section, key, rgwadmin.ErrNotFound)
}

func (d *recordingDest) DeleteMetadata(_ context.Context, section, key string) error {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.calls = append(d.calls, "delete "+section+":"+key)
	delete(d.have, section+":"+key)
	return nil
}

// Tentacle reshards in place: the instance stays, its num_shards changes
// (11 -> 3 in the lab's blobs, zone-a before and after `bucket reshard`).
// Put as it came onto zone-b's instance, zone-b laid its index anew with 3
// shards over the 11 it had: 2 of 12 objects deleted afterwards stayed
// listed (FACTS.md section 32; TestDataSyncReshard on Tentacle: 10 deletes
// after the reshard never showed). zone-b keeps its 11.
func TestReshardedInstanceKeepsTheDestinationsShards(t *testing.T) {
	before, err := os.ReadFile("../rgwlog/testdata/tentacle-bucket-instance-before-reshard.json")
	require.NoError(t, err)
	after, err := os.ReadFile("../rgwlog/testdata/tentacle-bucket-instance-resharded.json")
	require.NoError(t, err)
	dst := &recordingDest{}
	a := &Applier{cfg: Config{Dest: dst, Metrics: NewMetrics(nil), ApplyConcurrency: 4}, leases: allLeases{}, log: slog.New(slog.DiscardHandler)}
	const key = "lpkeep-6992:eaaf06ef-2d7e-4d2c-9535-0817096c58ef.4186.6"
	for _, blob := range [][]byte{before, after} {
		failed, err := a.applyBatch(context.Background(), rgwlog.Unit{}, &v1.Batch{Entries: []*v1.MetadataEntry{
			{Section: rgwlog.SectionBucketInstance, Name: key, Op: v1.MetadataOp_METADATA_OP_PUT, Blob: blob}}})
		require.NoError(t, err)
		require.Empty(t, failed)
	}
	n, err := rgwlog.NumShards(dst.have["bucket.instance:"+key])
	require.NoError(t, err)
	require.Equal(t, 11, n, "zone-b's index keeps its shards")
	// A new instance takes the source's number.
	delete(dst.have, "bucket.instance:"+key)
	_, err = a.applyBatch(context.Background(), rgwlog.Unit{}, &v1.Batch{Entries: []*v1.MetadataEntry{
		{Section: rgwlog.SectionBucketInstance, Name: key, Op: v1.MetadataOp_METADATA_OP_PUT, Blob: after}}})
	require.NoError(t, err)
	n, err = rgwlog.NumShards(dst.have["bucket.instance:"+key])
	require.NoError(t, err)
	require.Equal(t, 3, n)
}

// TestDeletedBucketInstanceIsNeverPut: Tentacle (20.2.4) keeps a removed
// bucket's instance with flags 64 (BUCKET_DELETED); the PUT of that blob
// onto an instance zone-b has kills zone-b's radosgw (SIGSEGV in
// RGWBucketInstanceMetadataHandler::put_prepare, 21 of 21 tries), and again
// after every restart (FACTS.md section 19). The applier never sends it:
// the source's metadata says the bucket is deleted, so zone-b's instance
// is deleted. The blobs are the lab's Tentacle zone-a before and after
// DELETE /bucket.
func TestDeletedBucketInstanceIsNeverPut(t *testing.T) {
	deleted, err := os.ReadFile("../rgwlog/testdata/tentacle-bucket-instance-deleted.json")
	require.NoError(t, err)
	live, err := os.ReadFile("../rgwlog/testdata/tentacle-bucket-instance-live.json")
	require.NoError(t, err)
	dst := &recordingDest{}
	a := &Applier{cfg: Config{Dest: dst, Metrics: NewMetrics(nil), ApplyConcurrency: 4}, leases: allLeases{}, log: slog.New(slog.DiscardHandler)}
	const key = "rec-del:33dbf5ba-3f2f-45c9-9d8f-2b940f149404.4186.1"
	failed, err := a.applyBatch(context.Background(), rgwlog.Unit{}, &v1.Batch{Entries: []*v1.MetadataEntry{
		{Section: rgwlog.SectionBucketInstance, Name: key, Op: v1.MetadataOp_METADATA_OP_PUT, Blob: live},
	}})
	require.NoError(t, err)
	require.Empty(t, failed)
	failed, err = a.applyBatch(context.Background(), rgwlog.Unit{}, &v1.Batch{Entries: []*v1.MetadataEntry{
		{Section: rgwlog.SectionBucketInstance, Name: key, Op: v1.MetadataOp_METADATA_OP_PUT, Blob: deleted},
	}})
	require.NoError(t, err)
	require.Empty(t, failed)
	require.Equal(t, []string{"put bucket.instance:" + key, "delete bucket.instance:" + key}, dst.calls)
}
