package exporter

import (
	"context"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	v1 "github.com/rgwsync/rgwsync/gen/rgwsync/v1"
)

// Chunk credit: a body's chunks go out only as granted. The first request
// of an op is the answer the data worker waits for and replaces what was
// left of the previous op's credit; top-ups add to the current op's; late
// top-ups of an earlier op and grants beyond maxChunkGrant give nothing.
func TestBodyCredit(t *testing.T) {
	c := newBodyCredit()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	took := func(seq uint64, index uint32) bool {
		tctx, tcancel := context.WithTimeout(ctx, 50*time.Millisecond)
		defer tcancel()
		return c.take(tctx, seq, index) == nil
	}

	require.True(t, c.grant(&v1.BodyRequest{Seq: 1, Index: 0, Chunks: 2}), "an op's first request is the answer")
	require.True(t, took(1, 0))
	require.True(t, took(1, 0))
	require.False(t, took(1, 0), "only what was granted")
	require.False(t, c.grant(&v1.BodyRequest{Seq: 1, Index: 0, Chunks: 1}), "a top-up is not an answer")
	require.True(t, took(1, 0))

	require.True(t, c.grant(&v1.BodyRequest{Seq: 1, Index: 2, Chunks: 1}))
	require.False(t, took(1, 0), "the previous op's credit is gone")
	require.False(t, c.grant(&v1.BodyRequest{Seq: 1, Index: 0, Chunks: 5}), "a late top-up of an earlier op")
	require.True(t, took(1, 2))
	require.False(t, took(1, 2), "the late top-up gave the current op nothing")

	require.True(t, c.grant(&v1.BodyRequest{Seq: 2, Index: 0, Skip: true}), "a skip is an answer")
	require.False(t, c.grant(&v1.BodyRequest{Seq: 2, Index: 0, Chunks: 3}), "a top-up of a skipped body")
	require.False(t, took(2, 0), "a skipped body gets no room")

	require.True(t, c.grant(&v1.BodyRequest{Seq: 3, Index: 1, Chunks: 1000}))
	for range maxChunkGrant {
		require.True(t, took(3, 1))
	}
	require.False(t, took(3, 1), "never more than maxChunkGrant ahead")

	// A waiting take wakes on the grant.
	done := make(chan error, 1)
	go func() { done <- c.take(ctx, 3, 1) }()
	time.Sleep(20 * time.Millisecond)
	require.False(t, c.grant(&v1.BodyRequest{Seq: 3, Index: 1, Chunks: 1}))
	require.NoError(t, <-done)
}

// A full-sync page lists each key's versions newest first; they are sent
// oldest first (a marker laid below another marker zone-b has is declined
// for good: FACTS.md sections 22, 25).
func TestFullSyncPageIsSentOldestFirst(t *testing.T) {
	refs := []objRef{{key: "a", version: "A3"}, {key: "a", version: "A2"}, {key: "a", version: "A1"}, {key: "b", version: ""},
		{key: "c", version: "C2"}, {key: "c", version: "C1"}}
	var got []string
	for _, r := range oldestFirst(refs) {
		got = append(got, r.key+r.version)
	}
	require.Equal(t, []string{"aA1", "aA2", "aA3", "b", "cC1", "cC2"}, got)
}
