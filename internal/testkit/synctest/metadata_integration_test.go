//go:build integration

package synctest

import (
	"context"
	"fmt"
	"os"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	v1 "github.com/rgwsync/rgwsync/gen/rgwsync/v1"
	"github.com/rgwsync/rgwsync/internal/rgwlog"
	"github.com/rgwsync/rgwsync/internal/testkit/labtest"
	"github.com/rgwsync/rgwsync/internal/verify"
)

func TestMain(m *testing.M) {
	code := m.Run()
	labtest.Stop()
	RemoveBinaries()
	os.Exit(code)
}

// Full sync of what existed before the services started, then incremental:
// users created, modified, deleted; tenant users and buckets; buckets
// created and removed.
func TestMetadataFullThenIncremental(t *testing.T) {
	e := NewEnv(t)
	p := labtest.RandomName("m")
	e.Only(p)
	// Before the services start: picked up by the full sync.
	alice := e.User(p+"-alice", "Alice")
	e.Bucket(alice, p+"-pre1")
	e.Bucket(alice, p+"-pre2")
	e.User(p+"-gone", "Deleted before sync")
	e.Lab.Admin(t, "zone-a", "user", "rm", "--uid="+p+"-gone")

	e.StartExporter("")
	e.StartApplier("a1")
	e.WaitMetadataEqual(90*time.Second, Prefix(p))

	// Incremental.
	bob := e.User("acme"+p+"$bob", "Tenant Bob")
	e.Bucket(bob, p+"-tenantbkt")
	e.User(p+"-carol", "Carol")
	e.Lab.Admin(t, "zone-a", "user", "modify", "--uid="+p+"-alice", "--display-name=Alice Modified", "--max-buckets=77")
	e.Lab.Admin(t, "zone-a", "user", "suspend", "--uid="+p+"-carol")
	e.Bucket(alice, p+"-new1")
	e.RemoveBucket(alice, p+"-pre2")
	e.User(p+"-dave", "Dave")
	e.Lab.Admin(t, "zone-a", "user", "rm", "--uid="+p+"-dave")
	e.WaitMetadataEqual(60*time.Second, Prefix(p))

	// The destination really has the modification and the tenant bucket.
	blob, err := e.Dst.GetMetadata(context.Background(), "user", p+"-alice")
	require.NoError(t, err)
	require.Contains(t, string(blob), "Alice Modified")
	_, err = e.Dst.GetMetadata(context.Background(), "bucket", "acme"+p+"/"+p+"-tenantbkt")
	require.NoError(t, err)

	// Status shows the full sync done and everything applied.
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	st, err := StatusOf(ctx, e.ExporterAddr, e.Dest)
	require.NoError(t, err)
	require.Len(t, st.GetDestinations(), 1)
	ds := st.GetDestinations()[0]
	require.Greater(t, ds.GetEntriesApplied(), uint64(0))
	var full *v1.ShardStatus
	for _, s := range ds.GetShards() {
		if s.GetShard().GetLogType() == v1.LogType_LOG_TYPE_METADATA_FULL {
			full = s
		}
	}
	require.NotNil(t, full)
	require.Equal(t, v1.ShardPhase_SHARD_PHASE_DONE, full.GetPhase())
	md := 0
	for _, s := range ds.GetShards() {
		if l := s.GetShard().GetLogType(); l == v1.LogType_LOG_TYPE_METADATA || l == v1.LogType_LOG_TYPE_METADATA_FULL {
			md++
		}
	}
	require.Equal(t, 65, md, "metadata units")
}

// 500 buckets created while the services run, by 8 writers.
func TestMetadata500Buckets(t *testing.T) {
	e := NewEnv(t)
	p := labtest.RandomName("h")
	e.Only(p)
	c := e.User(p+"-owner", "Owner of many")
	e.StartExporter("")
	e.StartApplier("a1")
	var wg sync.WaitGroup
	names := make(chan string)
	for range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for n := range names {
				e.Bucket(c, n)
			}
		}()
	}
	for i := range 500 {
		names <- fmt.Sprintf("%s-b%03d", p, i)
	}
	close(names)
	wg.Wait()
	e.WaitMetadataEqual(3*time.Minute, Prefix(p))
	// Every page: a lab that served other tests holds more than one.
	keys, err := verify.Keys(context.Background(), e.Dst, "bucket")
	require.NoError(t, err)
	n := 0
	for _, k := range keys {
		if len(k) > len(p) && k[:len(p)] == p {
			n++
		}
	}
	require.Equal(t, 500, n, "buckets on the destination")
}

// GetBounds answers in the replica_log shape and moves with the applier.
func TestGetBoundsAdvances(t *testing.T) {
	e := NewEnv(t)
	p := labtest.RandomName("g")
	e.Only(p)
	e.StartExporter("")
	e.StartApplier("a1")
	e.User(p+"-x", "X")
	e.WaitMetadataEqual(60*time.Second, Prefix(p))
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	// The user may have come with the full sync (which lists everything in
	// the shared lab): wait for it to finish.
	require.Eventually(t, func() bool {
		full, err := e.BoundsOf(ctx, rgwlog.Unit{Log: rgwlog.LogMetadataFull})
		return err == nil && full.GetMarker() == "3|"
	}, 60*time.Second, 100*time.Millisecond, "full sync position past the last section")
	// A user created now comes by the mdlog (the first one may have come
	// with the full sync only, leaving every mdlog bound where init put it:
	// a CI run failed on that race), and its ack moves a bound.
	e.User(p+"-y", "Y")
	e.WaitMetadataEqual(60*time.Second, Prefix(p))
	moved := func() int {
		n := 0
		for i := range 64 {
			b, err := e.BoundsOf(ctx, rgwlog.Unit{Log: rgwlog.LogMetadata, Shard: uint32(i)})
			require.NoError(t, err)
			require.Len(t, b.GetMarkers(), 1)
			if b.GetMarkers()[0].GetEntity() == "a1" {
				n++
				require.NotEmpty(t, b.GetMarker())
			}
		}
		return n
	}
	// Polled here, not in require.Eventually: moved asserts with require,
	// which must run on the test's goroutine.
	for deadline := time.Now().Add(10 * time.Second); moved() == 0 && time.Now().Before(deadline); {
		time.Sleep(100 * time.Millisecond)
	}
	require.Greater(t, moved(), 0, "some mdlog bound acked by applier a1")
}
