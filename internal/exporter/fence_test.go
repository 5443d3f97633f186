package exporter

import (
	"fmt"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	v1 "github.com/rgwsync/rgwsync/gen/rgwsync/v1"
	"github.com/rgwsync/rgwsync/internal/rgwadmin"
	"github.com/rgwsync/rgwsync/internal/rgwlog"
	"github.com/rgwsync/rgwsync/internal/rgwobj"
)

const (
	suspendedB1 = `{"data":{"bucket_info":{"num_shards":0,"owner":"alice","flags":6,"bucket":{"tenant":""}}}}`
	enabledB1   = `{"data":{"bucket_info":{"num_shards":0,"owner":"alice","flags":2,"bucket":{"tenant":""}}}}`
)

func nullPut(bucket, key string) *v1.ObjectOp {
	return &v1.ObjectOp{Kind: v1.ObjectOpKind_OBJECT_OP_KIND_PUT, Bucket: bucket, Key: key, VersionId: "null"}
}

func instancePut(key, blob string) *v1.MetadataEntry {
	return &v1.MetadataEntry{Section: rgwlog.SectionBucketInstance, Name: key, Op: v1.MetadataOp_METADATA_OP_PUT, Blob: []byte(blob)}
}

func TestVersioningFence(t *testing.T) {
	var f versioningFence
	now := time.Now()
	versioned := &v1.ObjectOp{Kind: v1.ObjectOpKind_OBJECT_OP_KIND_PUT, Bucket: "b", Key: "v", VersionId: "V1"}
	fenced, d1 := f.admitOps([]*v1.ObjectOp{nullPut("b", "k"), versioned, nil, nullPut("acme:t", "k")}, now)
	require.Equal(t, []bool{false, false, false, false}, fenced, "nothing of the buckets' metadata in flight")

	// An instance of a bucket with such writes in flight waits, and then
	// the bucket's new writes wait for it; another bucket's, an
	// unversioned one's and a deletion go.
	never := `{"data":{"bucket_info":{"num_shards":0,"flags":0}}}`
	del := &v1.MetadataEntry{Section: rgwlog.SectionBucketInstance, Name: "b:i1", Op: v1.MetadataOp_METADATA_OP_DELETE}
	why, m1 := f.admitEntries([]*v1.MetadataEntry{instancePut("b:i1", enabledB1), instancePut("c:i2", enabledB1),
		instancePut("acme/t:i3", never), del, instancePut("acme/t:i3", suspendedB1)}, now)
	require.Contains(t, why[0], "1 object write(s) of bucket b")
	require.True(t, strings.HasPrefix(why[0], FencedPrefix))
	require.Equal(t, []string{"", "", ""}, why[1:4])
	require.Contains(t, why[4], "bucket acme:t", "a tenant's instance key names the bucket as its object ops do")
	fenced, d2 := f.admitOps([]*v1.ObjectOp{nullPut("b", "k2"), versioned, nullPut("c", "k")}, now)
	require.Equal(t, []bool{true, false, true}, fenced, "b: its instance waits to go; c: its instance is in flight")

	// The writes acked, the instance goes; meanwhile b's writes wait.
	f.release(d1)
	f.release(d2)
	why, m2 := f.admitEntries([]*v1.MetadataEntry{instancePut("b:i1", enabledB1)}, now)
	require.Equal(t, []string{""}, why)
	fenced, d3 := f.admitOps([]*v1.ObjectOp{nullPut("b", "k2")}, now)
	require.Equal(t, []bool{true}, fenced)
	f.release(d3)
	f.release(m1)
	f.release(m2)
	f.release(m2) // twice: no effect
	fenced, d4 := f.admitOps([]*v1.ObjectOp{nullPut("b", "k2"), nullPut("c", "k")}, now)
	require.Equal(t, []bool{false, false}, fenced)
	f.release(d4)

	// An instance that waited and never came back stops holding the
	// bucket's writes after fenceWanted.
	_, d5 := f.admitOps([]*v1.ObjectOp{nullPut("b", "k")}, now)
	why, _ = f.admitEntries([]*v1.MetadataEntry{instancePut("b:i1", enabledB1)}, now)
	require.NotEmpty(t, why[0])
	f.release(d5)
	fenced, _ = f.admitOps([]*v1.ObjectOp{nullPut("b", "k")}, now.Add(fenceWanted/2))
	require.Equal(t, []bool{true}, fenced)
	fenced, _ = f.admitOps([]*v1.ObjectOp{nullPut("b", "k")}, now.Add(fenceWanted+time.Second))
	require.Equal(t, []bool{false}, fenced)
}

// A bucket instance change is not applied while an object write of its
// bucket that lands by the bucket's versioning is in flight, nor such a
// write while the instance is (make chaos seed 1 extended: one applier put
// zone-b's bucket back to Enabled 250 ms before another applier's null
// write, which had read Suspended, landed: "null" listed twice, for good).
// Before the fence both went out at once.
func TestInstanceAndVersioningWritesAreNeverInFlightTogether(t *testing.T) {
	src, data := oneBucketSource()
	src.blobs["bucket.instance:b1:inst1"] = suspendedB1
	objs := listedObjects{&fakeObjects{versions: map[string]rgwobj.ListEntry{
		"k\x00null": {Key: "k", VersionID: "null", IsLatest: true, Owner: "alice"},
	}}}
	r := newRig(t, src, filepath.Join(t.TempDir(), "f.db"), func(c *Config) {
		c.Data, c.Objects = data, objs
	})
	a := r.dial(t, "a1")
	a.fullSync(t, r)
	a.subscribe(rgwlog.Unit{Log: rgwlog.LogData})
	untilIncremental(r, a, b1Key)
	a.subscribe(mdUnit(0))

	// Every batch, from a reader of the stream.
	in := make(chan *v1.Batch, 256)
	go func() {
		defer close(in)
		for {
			m, err := a.s.Recv()
			if err != nil {
				return
			}
			if b := m.GetBatch(); b != nil {
				in <- b
			}
		}
	}()
	// A log's batches are acked as they come unless it is held (acks go
	// in order: then they are kept, and acked by flush).
	held := map[v1.LogType]bool{}
	kept := map[v1.LogType][]*v1.Batch{}
	handle := func(b *v1.Batch) {
		l := b.GetShard().GetLogType()
		if held[l] {
			kept[l] = append(kept[l], b)
			return
		}
		a.ack(b)
	}
	flush := func(l v1.LogType) {
		for _, b := range kept[l] {
			a.ack(b)
		}
		kept[l], held[l] = nil, false
	}
	full := func(b *v1.Batch) bool { return len(b.GetEntries()) > 0 || len(b.GetObjects()) > 0 }
	// recv is the next batch of log l with something in it (held: l's
	// later ones are kept); the others are handled.
	recv := func(l v1.LogType, what string) *v1.Batch {
		t.Helper()
		timeout := time.After(10 * time.Second)
		for {
			select {
			case b := <-in:
				if b.GetShard().GetLogType() == l && full(b) {
					held[l] = true
					return b
				}
				handle(b)
			case <-timeout:
				require.FailNow(t, "no batch with "+what)
			}
		}
	}
	// quiet: for a second, no batch carries what nothing must carry.
	quiet := func(nothing func(*v1.Batch) bool, msg string) {
		t.Helper()
		timeout := time.After(time.Second)
		for {
			select {
			case b := <-in:
				require.False(t, nothing(b), msg)
				handle(b)
			case <-timeout:
				return
			}
		}
	}
	const md, dl = v1.LogType_LOG_TYPE_METADATA, v1.LogType_LOG_TYPE_DATA

	// 1. The null write in flight: the instance change waits for its ack.
	logged := func(n int) {
		data.mu.Lock()
		data.datalog = append(data.datalog, rgwadmin.DataLogEntry{EntityType: "bucket", Key: "b1:inst1", LogID: fmt.Sprintf("1_%04d", n)})
		data.mu.Unlock()
	}
	data.write("b1:inst1", "k", 10)
	logged(10)
	db := recv(dl, "the null write")
	require.Equal(t, "k", db.GetObjects()[0].GetKey())
	src.putBlob(0, rgwlog.SectionBucketInstance, "b1:inst1", []byte(enabledB1))
	quiet(func(b *v1.Batch) bool { return len(b.GetEntries()) > 0 },
		"the bucket instance went out while a null write of its bucket was in flight")
	a.ack(db)
	flush(dl)
	mb := recv(md, "the bucket instance")
	require.Equal(t, "b1:inst1", mb.GetEntries()[0].GetName(), "sent once the write is acked")

	// 2. The instance in flight: the bucket's next null write waits.
	data.write("b1:inst1", "k", 11)
	logged(11)
	quiet(func(b *v1.Batch) bool { return len(b.GetObjects()) > 0 },
		"a null write went out while its bucket's instance was in flight")
	a.ack(mb)
	flush(md)
	db = recv(dl, "the second null write")
	require.Equal(t, "k", db.GetObjects()[0].GetKey(), "sent (as a retry) once the instance is acked")
	a.ack(db)
	flush(dl)
	a.cancel()
}
