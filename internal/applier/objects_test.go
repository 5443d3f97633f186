package applier

import (
	"context"
	"errors"
	"io"
	"sync"
	"testing"

	"github.com/stretchr/testify/require"

	v1 "github.com/rgwsync/rgwsync/gen/rgwsync/v1"
	"github.com/rgwsync/rgwsync/internal/rgwobj"
)

// The HTTP transport can still be reading a request body when the request
// has returned; drain must then neither race with it nor lose chunks of
// the op (run with -race: a chaos run crashed an applier here).
func TestChunkReaderDrainWhileTransportReads(t *testing.T) {
	for range 50 {
		ch := make(chan *v1.ObjectChunk, 8)
		r := &chunkReader{ctx: context.Background(), ch: ch, index: 3}
		var wg sync.WaitGroup
		wg.Add(1)
		go func() { // the transport's writer goroutine
			defer wg.Done()
			buf := make([]byte, 7)
			for {
				if _, err := r.Read(buf); err != nil {
					return
				}
			}
		}()
		var off int64
		for i := range 6 {
			data := make([]byte, 1000)
			ch <- &v1.ObjectChunk{Index: 3, Offset: off, Data: data, Last: i == 5}
			off += int64(len(data))
		}
		r.drain() // concurrently with the reads above
		wg.Wait()
		_, err := r.Read(make([]byte, 1))
		require.ErrorIs(t, err, errDetached)
		require.Len(t, ch, 0, "every chunk of the op consumed")
	}
}

func TestChunkReaderSourceFailed(t *testing.T) {
	ch := make(chan *v1.ObjectChunk, 2)
	ch <- &v1.ObjectChunk{Index: 0, Offset: -1, Last: true}
	r := &chunkReader{ctx: context.Background(), ch: ch}
	_, err := io.ReadAll(r)
	require.True(t, errors.Is(err, errSourceBody))
	require.True(t, r.sourceFailed())
}

func TestSameCopy(t *testing.T) {
	base := rgwobj.ObjectInfo{ETag: "e", Size: 3, Owner: "alice", ContentType: "text/plain",
		UserMeta: map[string]string{"a": "1"}, Tags: map[string]string{"k": "v"}}
	require.True(t, sameCopy(base, base))
	for name, mod := range map[string]func(*rgwobj.ObjectInfo){
		"tags dropped at the source": func(i *rgwobj.ObjectInfo) { i.Tags = nil },
		"tag changed":                func(i *rgwobj.ObjectInfo) { i.Tags = map[string]string{"k": "w"} },
		"ACL set":                    func(i *rgwobj.ObjectInfo) { i.ACL = []byte("<AccessControlPolicy/>") },
		"metadata added":             func(i *rgwobj.ObjectInfo) { i.UserMeta = map[string]string{"a": "1", "b": "2"} },
		"owner":                      func(i *rgwobj.ObjectInfo) { i.Owner = "bob" },
		"body":                       func(i *rgwobj.ObjectInfo) { i.ETag = "f" },
	} {
		want := base
		mod(&want)
		require.False(t, sameCopy(base, want), name)
	}
	noTags := base
	noTags.Tags = map[string]string{}
	base.Tags = nil
	require.True(t, sameCopy(base, noTags), "no tags and an empty tag set are the same")
}

// Bodies on request: one answer per chunked op; a skipped body is never
// waited for, an op that failed before asking answers skip at drain.
func TestChunkReaderAsk(t *testing.T) {
	type answer struct {
		index uint32
		skip  bool
	}
	var got []answer
	ask := func(i uint32, skip bool) { got = append(got, answer{i, skip}) }
	ch := make(chan *v1.ObjectChunk, 4)

	r := &chunkReader{ctx: context.Background(), ch: ch, index: 0, ask: ask}
	r.notWanted()
	r.want() // too late: answered once
	r.drain()
	require.Equal(t, []answer{{0, true}}, got)

	r = &chunkReader{ctx: context.Background(), ch: ch, index: 1, ask: ask}
	r.want()
	ch <- &v1.ObjectChunk{Index: 1, Offset: 0, Data: []byte("abc"), Last: true}
	b, err := io.ReadAll(r)
	require.NoError(t, err)
	require.Equal(t, "abc", string(b))
	r.drain()

	r = &chunkReader{ctx: context.Background(), ch: ch, index: 2, ask: ask}
	r.drain() // failed before it asked: nothing comes, nothing blocks
	require.Equal(t, []answer{{0, true}, {1, false}, {2, true}}, got)
	require.Len(t, ch, 0)
}
