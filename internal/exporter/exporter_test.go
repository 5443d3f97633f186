package exporter

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/test/bufconn"
	"google.golang.org/protobuf/types/known/timestamppb"

	v1 "github.com/rgwsync/rgwsync/gen/rgwsync/v1"
	"github.com/rgwsync/rgwsync/internal/checkpoint"
	"github.com/rgwsync/rgwsync/internal/rgwadmin"
	"github.com/rgwsync/rgwsync/internal/rgwlog"
	"github.com/rgwsync/rgwsync/internal/rgwobj"
	"github.com/rgwsync/rgwsync/internal/wire"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// fakeSource is an in-memory source: a few mdlog shards and metadata keys.
// Entry ids have the gateway's shape (1_<sec.usec>_<n>.1).
type fakeSource struct {
	mu       sync.Mutex
	n        int
	shards   map[int][]rgwadmin.MDLogEntry
	blobs    map[string]string // "section:key" -> blob
	failGets map[string]bool
	gets     map[string]int // "section:key" -> GetMetadata calls
	// unlisted: keys GetMetadata answers but the listing does not name
	// (a removed key the gateway still serves from its cache).
	unlisted map[string]bool
}

func newFakeSource() *fakeSource {
	return &fakeSource{shards: map[int][]rgwadmin.MDLogEntry{}, blobs: map[string]string{}, failGets: map[string]bool{},
		gets: map[string]int{}, unlisted: map[string]bool{}}
}

func (f *fakeSource) put(shard int, section, key string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.n++
	f.blobs[section+":"+key] = fmt.Sprintf(`{"key":"%s:%s","ver":{"tag":"t","ver":%d},"data":{}}`, section, key, f.n)
	f.log(shard, section, key)
}

// putBlob logs a change of key whose blob is blob (a recorded answer).
func (f *fakeSource) putBlob(shard int, section, key string, blob []byte) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.n++
	f.blobs[section+":"+key] = string(blob)
	f.log(shard, section, key)
}

// vanish removes key without a log entry (as the gateway removes a
// reshard's old instance: FACTS.md section 17).
func (f *fakeSource) vanish(section, key string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	delete(f.blobs, section+":"+key)
}

// unlist removes key from the source's listing only (FACTS.md section 26).
func (f *fakeSource) unlist(section, key string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.unlisted[section+":"+key] = true
}

func (f *fakeSource) del(shard int, section, key string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.n++
	delete(f.blobs, section+":"+key)
	f.log(shard, section, key)
}

func (f *fakeSource) log(shard int, section, key string) {
	ts := time.Unix(1795609530+int64(f.n), 0).UTC()
	f.shards[shard] = append(f.shards[shard], rgwadmin.MDLogEntry{
		ID: fmt.Sprintf("1_%d.000000_%d.1", ts.Unix(), f.n), Section: section, Name: key, Timestamp: ts, Status: "complete"})
}

func (f *fakeSource) MDLogInfo(context.Context) (rgwadmin.LogInfo, error) {
	return rgwadmin.LogInfo{NumShards: 4, Period: "p1", RealmEpoch: 2}, nil
}

func (f *fakeSource) MDLogShardInfo(_ context.Context, _ string, shard int) (rgwadmin.ShardInfo, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	es := f.shards[shard]
	if len(es) == 0 {
		return rgwadmin.ShardInfo{}, nil
	}
	return rgwadmin.ShardInfo{Marker: es[len(es)-1].ID, LastUpdate: es[len(es)-1].Timestamp}, nil
}

func (f *fakeSource) ListMDLog(_ context.Context, _ string, shard int, marker string, max int) (rgwadmin.MDLogPage, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	es := f.shards[shard]
	start := 0
	for i, e := range es {
		if e.ID == marker {
			start = i + 1
		}
	}
	end := min(start+max, len(es))
	page := rgwadmin.MDLogPage{Entries: append([]rgwadmin.MDLogEntry(nil), es[start:end]...), Truncated: end < len(es)}
	if end > start {
		page.Marker = es[end-1].ID
	}
	return page, nil
}

func (f *fakeSource) ListMetadataKeys(_ context.Context, section, marker string, max int) (rgwadmin.KeyPage, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	var keys []string
	for k := range f.blobs {
		if sec, name, _ := strings.Cut(k, ":"); sec == section && name > marker && !f.unlisted[k] {
			keys = append(keys, name)
		}
	}
	sort.Strings(keys)
	p := rgwadmin.KeyPage{Keys: keys}
	if len(keys) > max {
		p.Keys, p.Truncated, p.Marker = keys[:max], true, keys[max-1]
	}
	p.Count = len(p.Keys)
	return p, nil
}

func (f *fakeSource) GetMetadata(_ context.Context, section, key string) ([]byte, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.gets[section+":"+key]++
	if f.failGets[section+":"+key] {
		return nil, &rgwadmin.GatewayError{Op: "get metadata", Status: 500, Code: "InternalError"}
	}
	b, ok := f.blobs[section+":"+key]
	if !ok {
		return nil, fmt.Errorf("get metadata %s:%s: %w", section, key, rgwadmin.ErrNotFound)
	}
	return []byte(b), nil
}

func (f *fakeSource) TrimMDLog(_ context.Context, _ string, shard int, marker string) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	es := f.shards[shard]
	for i, e := range es {
		if e.ID == marker {
			f.shards[shard] = append([]rgwadmin.MDLogEntry(nil), es[i+1:]...)
			return nil
		}
	}
	return fmt.Errorf("trim: no entry %s", marker)
}

type rig struct {
	exp   *Exporter
	store *checkpoint.Store
	srv   *grpc.Server
	conn  *grpc.ClientConn
}

func newRig(t *testing.T, src *fakeSource, storePath string, opts ...func(*Config)) *rig {
	store, err := checkpoint.Open(storePath)
	require.NoError(t, err)
	cfg := Config{ID: "exp", Source: src, Store: store, BatchEntries: 3,
		PollMin: 5 * time.Millisecond, PollMax: 20 * time.Millisecond, RetryMin: 10 * time.Millisecond, RetryMax: 20 * time.Millisecond,
		HeadPollInterval: 20 * time.Millisecond, MaxInflightBatches: 2}
	for _, o := range opts {
		o(&cfg)
	}
	exp, err := New(context.Background(), cfg)
	require.NoError(t, err)
	exp.Start()
	lis := bufconn.Listen(1 << 20)
	srv := grpc.NewServer()
	v1.RegisterReplicationServiceServer(srv, exp)
	v1.RegisterStatusServiceServer(srv, exp)
	go func() { _ = srv.Serve(lis) }()
	conn, err := grpc.NewClient("passthrough:///bufnet",
		grpc.WithContextDialer(func(ctx context.Context, _ string) (net.Conn, error) { return lis.DialContext(ctx) }),
		grpc.WithTransportCredentials(insecure.NewCredentials()))
	require.NoError(t, err)
	r := &rig{exp: exp, store: store, srv: srv, conn: conn}
	t.Cleanup(r.close)
	return r
}

func (r *rig) close() {
	if r.srv == nil {
		return
	}
	r.conn.Close()
	r.srv.Stop()
	r.exp.Close()
	r.store.Close()
	r.srv = nil
}

// applierStream is a test applier on one stream.
type applierStream struct {
	t      *testing.T
	s      v1.ReplicationService_ReplicateClient
	cancel context.CancelFunc
}

func (r *rig) dial(t *testing.T, id string) *applierStream {
	ctx, cancel := context.WithCancel(context.Background())
	s, err := v1.NewReplicationServiceClient(r.conn).Replicate(ctx)
	require.NoError(t, err)
	require.NoError(t, s.Send(&v1.ReplicateRequest{Msg: &v1.ReplicateRequest_Hello{Hello: &v1.Hello{Destination: "zone-b", ApplierId: id}}}))
	m, err := s.Recv()
	require.NoError(t, err)
	require.NotNil(t, m.GetWelcome())
	require.Equal(t, uint32(4), m.GetWelcome().GetMetadataShards())
	a := &applierStream{t: t, s: s, cancel: cancel}
	t.Cleanup(cancel)
	return a
}

func (a *applierStream) subscribe(u rgwlog.Unit) {
	require.NoError(a.t, a.s.Send(&v1.ReplicateRequest{Msg: &v1.ReplicateRequest_Subscribe{Subscribe: &v1.Subscribe{Shard: wire.Ref(u)}}}))
}

// next returns the next batch, skipping shard states.
func (a *applierStream) next() *v1.Batch {
	for {
		m, err := a.s.Recv()
		require.NoError(a.t, err)
		if b := m.GetBatch(); b != nil {
			return b
		}
		require.Nil(a.t, m.GetRevoke(), "unexpected revoke: %v", m.GetRevoke())
	}
}

func (a *applierStream) ack(b *v1.Batch, failed ...*v1.RetryItem) {
	require.NoError(a.t, a.s.Send(&v1.ReplicateRequest{Msg: &v1.ReplicateRequest_Ack{Ack: &v1.Ack{
		Shard: b.GetShard(), Seq: b.GetSeq(), ThroughMarker: b.GetThroughMarker(), Failed: failed}}}))
}

var fullUnit = rgwlog.Unit{Log: rgwlog.LogMetadataFull}

func mdUnit(n uint32) rgwlog.Unit { return rgwlog.Unit{Log: rgwlog.LogMetadata, Shard: n} }

func names(b *v1.Batch) []string {
	var out []string
	for _, e := range b.GetEntries() {
		op := "put"
		if e.GetOp() == v1.MetadataOp_METADATA_OP_DELETE {
			op = "del"
		}
		out = append(out, e.GetSection()+":"+e.GetName()+":"+op)
	}
	return out
}

func waitBound(t *testing.T, st *checkpoint.Store, u rgwlog.Unit, pred func(checkpoint.Bound) bool) checkpoint.Bound {
	t.Helper()
	var b checkpoint.Bound
	require.Eventually(t, func() bool {
		var ok bool
		var err error
		b, ok, err = st.Get(checkpoint.UnitKey("zone-b", u))
		return err == nil && ok && pred(b)
	}, 5*time.Second, 5*time.Millisecond)
	return b
}

func TestFullSyncThenIncrementalWithRetry(t *testing.T) {
	src := newFakeSource()
	for _, u := range []string{"alice", "bob", "carol", "dave"} {
		src.put(1, "user", u)
	}
	src.put(2, "bucket.instance", "b1:inst")
	src.put(2, "bucket", "b1")
	r := newRig(t, src, filepath.Join(t.TempDir(), "b.db"))
	a := r.dial(t, "a1")

	// Initialised: mdlog bounds are the heads recorded before the full sync.
	b1, ok, err := r.store.Get(checkpoint.UnitKey("zone-b", mdUnit(1)))
	require.NoError(t, err)
	require.True(t, ok)
	require.Equal(t, src.shards[1][3].ID, b1.Marker)

	// A change made during the full sync is logged after the recorded head.
	src.put(1, "user", "erin")

	// An incremental shard waits for the full sync.
	a.subscribe(mdUnit(1))
	a.subscribe(fullUnit)
	var got []string
	for {
		b := a.next()
		require.Equal(t, v1.LogType_LOG_TYPE_METADATA_FULL, b.GetShard().GetLogType(), "incremental before the full sync is done")
		got = append(got, names(b)...)
		a.ack(b)
		if !b.GetMore() {
			break
		}
	}
	require.Equal(t, []string{"user:alice:put", "user:bob:put", "user:carol:put", "user:dave:put", "user:erin:put",
		"bucket.instance:b1:inst:put", "bucket:b1:put"}, got, "users, then instances, then buckets")
	waitBound(t, r.store, fullUnit, func(b checkpoint.Bound) bool { return b.Phase == checkpoint.PhaseDone })

	// Incremental from the recorded head: erin's change; the failed key is
	// kept as a retry in the bound, then resent and cleared.
	b := a.next()
	require.Equal(t, mdUnit(1), wire.Unit(b.GetShard()))
	require.Equal(t, []string{"user:erin:put"}, names(b))
	a.ack(b, &v1.RetryItem{Section: "user", Name: "erin", Error: "destination said 503", Timestamp: timestamppb.Now()})
	bound := waitBound(t, r.store, mdUnit(1), func(b checkpoint.Bound) bool { return len(b.Retries) == 1 })
	require.Equal(t, src.shards[1][4].ID, bound.Marker, "the bound moves past the failed entry; the item is kept as a retry")
	require.Equal(t, uint32(1), bound.Retries[0].Attempts)

	b = a.next()
	require.Equal(t, []string{"user:erin:put"}, names(b))
	require.Equal(t, uint32(2), b.GetEntries()[0].GetAttempt())
	require.Equal(t, bound.Marker, b.GetThroughMarker(), "a retry batch does not move the marker")
	a.ack(b)
	waitBound(t, r.store, mdUnit(1), func(b checkpoint.Bound) bool { return len(b.Retries) == 0 })

	// De-duplication within a batch and deletes.
	src.put(1, "user", "frank")
	src.put(1, "user", "frank")
	src.del(1, "user", "bob")
	b = a.next()
	require.Equal(t, []string{"user:frank:put", "user:bob:del"}, names(b))
	a.ack(b)
	waitBound(t, r.store, mdUnit(1), func(b checkpoint.Bound) bool { return b.Marker == src.shards[1][7].ID })
}

// A metadata delete is sent once more after RecheckDelay (the gateway can
// still serve a deleted bucket entrypoint when writes were in flight):
// fetched again from the source, still gone, deleted again; the re-check
// is not a failure (not in GetBounds, not counted) and is not re-scheduled.
func TestMetadataDeleteIsRechecked(t *testing.T) {
	src := newFakeSource()
	src.put(1, "bucket", "b1")
	r := newRig(t, src, filepath.Join(t.TempDir(), "b.db"), func(c *Config) { c.RecheckDelay = 300 * time.Millisecond })
	a := r.dial(t, "a1")
	a.fullSync(t, r)
	a.subscribe(mdUnit(1))
	src.del(1, "bucket", "b1")
	b := a.next()
	require.Equal(t, []string{"bucket:b1:del"}, names(b))
	a.ack(b)
	bound := waitBound(t, r.store, mdUnit(1), func(b checkpoint.Bound) bool { return len(b.Retries) == 1 })
	require.Equal(t, recheckMark, bound.Retries[0].Error)
	require.Zero(t, failures(bound.Retries))
	gb, err := r.exp.GetBounds(context.Background(), &v1.GetBoundsRequest{Destination: "zone-b", LogType: v1.LogType_LOG_TYPE_METADATA, Shard: 1})
	require.NoError(t, err)
	require.Empty(t, gb.GetMarkers()[0].GetItemsInProgress(), "a re-check is not work in progress")

	start := time.Now()
	b = a.next()
	require.GreaterOrEqual(t, time.Since(start), 200*time.Millisecond, "not before its delay")
	require.Equal(t, []string{"bucket:b1:del"}, names(b), "still gone at the source: deleted again")
	require.Equal(t, bound.Marker, b.GetThroughMarker())
	a.ack(b)
	waitBound(t, r.store, mdUnit(1), func(b checkpoint.Bound) bool { return len(b.Retries) == 0 })
}

func TestSourceFetchFailureBecomesRetry(t *testing.T) {
	src := newFakeSource()
	r := newRig(t, src, filepath.Join(t.TempDir(), "b.db"))
	a := r.dial(t, "a1")
	a.subscribe(fullUnit)
	for b := a.next(); ; b = a.next() {
		a.ack(b)
		if !b.GetMore() {
			break
		}
	}
	src.failGets["user:zed"] = true
	src.put(0, "user", "zed")
	src.put(0, "user", "amy")
	a.subscribe(mdUnit(0))
	b := a.next()
	require.Equal(t, []string{"user:amy:put"}, names(b), "the key the source fails on is not sent")
	a.ack(b)
	bound := waitBound(t, r.store, mdUnit(0), func(b checkpoint.Bound) bool { return len(b.Retries) == 1 })
	require.Contains(t, bound.Retries[0].Error, "source:")
	src.mu.Lock()
	delete(src.failGets, "user:zed")
	src.mu.Unlock()
	// Retries may have run (and failed again: empty batches) before the
	// source healed; the key comes through on a later one.
	for i := 0; ; i++ {
		require.Less(t, i, 50, "zed never resent")
		b = a.next()
		a.ack(b)
		if len(b.GetEntries()) > 0 {
			require.Equal(t, []string{"user:zed:put"}, names(b))
			require.Greater(t, b.GetEntries()[0].GetAttempt(), uint32(1))
			break
		}
	}
	waitBound(t, r.store, mdUnit(0), func(b checkpoint.Bound) bool { return len(b.Retries) == 0 })
}

func TestNewSubscriptionRevokesOldAndResumesFromBound(t *testing.T) {
	src := newFakeSource()
	path := filepath.Join(t.TempDir(), "b.db")
	r := newRig(t, src, path)
	a := r.dial(t, "a1")
	a.subscribe(fullUnit)
	for b := a.next(); ; b = a.next() {
		a.ack(b)
		if !b.GetMore() {
			break
		}
	}
	for _, u := range []string{"u1", "u2", "u3", "u4"} {
		src.put(3, "user", u)
	}
	a.subscribe(mdUnit(3))
	first := a.next()
	require.Equal(t, []string{"user:u1:put", "user:u2:put", "user:u3:put"}, names(first))
	a.ack(first)
	waitBound(t, r.store, mdUnit(3), func(b checkpoint.Bound) bool { return b.Marker == src.shards[3][2].ID })
	second := a.next() // in flight, never acked by a1

	// a2 takes the shard: a1 is revoked, a2 starts again from the bound.
	b2 := r.dial(t, "a2")
	b2.subscribe(mdUnit(3))
	got := b2.next()
	require.Equal(t, []string{"user:u4:put"}, names(got))
	for {
		m, err := a.s.Recv()
		require.NoError(t, err)
		require.Nil(t, m.GetBatch(), "no batch for a1 after a2 subscribed")
		if m.GetRevoke() != nil {
			break // a1 is told
		}
	}
	a.ack(second) // refused: not a1's any more
	b2.ack(got)
	bound := waitBound(t, r.store, mdUnit(3), func(b checkpoint.Bound) bool { return b.Marker == src.shards[3][3].ID })
	require.Equal(t, "a2", bound.Applier)

	// A restarted exporter on the same file resumes from the bounds.
	r.close()
	src.put(3, "user", "u5")
	r2 := newRig(t, src, path)
	c := r2.dial(t, "a3")
	c.subscribe(mdUnit(3))
	require.Equal(t, []string{"user:u5:put"}, names(c.next()))
}

func TestOutOfOrderAckEndsTheSubscription(t *testing.T) {
	src := newFakeSource()
	r := newRig(t, src, filepath.Join(t.TempDir(), "b.db"))
	a := r.dial(t, "a1")
	a.subscribe(fullUnit)
	b := a.next()
	a.ack(&v1.Batch{Shard: b.GetShard(), Seq: b.GetSeq() + 5, ThroughMarker: "x"})
	for {
		m, err := a.s.Recv()
		require.NoError(t, err)
		if rv := m.GetRevoke(); rv != nil {
			require.Contains(t, rv.GetReason(), "protocol: ack for batch")
			break
		}
	}
	bound, _, err := r.store.Get(checkpoint.UnitKey("zone-b", fullUnit))
	require.NoError(t, err)
	require.Equal(t, "0|", bound.Marker, "nothing acked properly, nothing moved")
}

func TestStatusAndGetBounds(t *testing.T) {
	src := newFakeSource()
	src.put(0, "user", "alice")
	r := newRig(t, src, filepath.Join(t.TempDir(), "b.db"))
	a := r.dial(t, "a1")
	a.fullSync(t, r)
	cl := v1.NewStatusServiceClient(r.conn)
	ctx := context.Background()
	st, err := cl.Status(ctx, &v1.StatusRequest{Destination: "zone-b"})
	require.NoError(t, err)
	require.Len(t, st.GetDestinations(), 1)
	require.Len(t, st.GetDestinations()[0].GetShards(), 5)
	require.Equal(t, []string{"a1"}, st.GetDestinations()[0].GetAppliers())
	gb, err := cl.GetBounds(ctx, &v1.GetBoundsRequest{Destination: "zone-b", LogType: v1.LogType_LOG_TYPE_METADATA_FULL})
	require.NoError(t, err)
	require.Equal(t, "3|", gb.GetMarker())
	require.Equal(t, "a1", gb.GetMarkers()[0].GetEntity())
	_, err = cl.GetBounds(ctx, &v1.GetBoundsRequest{Destination: "zone-b", LogType: v1.LogType_LOG_TYPE_METADATA, Shard: 99})
	require.ErrorContains(t, err, "no shard")
	_, err = cl.Status(ctx, &v1.StatusRequest{Destination: "nope"})
	require.ErrorContains(t, err, "no destination")
}

func TestTrimmedLogTriggersFullResync(t *testing.T) {
	src := newFakeSource()
	src.put(2, "user", "old")
	r := newRig(t, src, filepath.Join(t.TempDir(), "b.db"))
	a := r.dial(t, "a1")
	a.fullSync(t, r)
	a.subscribe(mdUnit(2))
	src.put(2, "user", "u1")
	b := a.next()
	a.ack(b)
	bound := waitBound(t, r.store, mdUnit(2), func(b checkpoint.Bound) bool { return b.Marker == src.shards[2][1].ID })
	require.Equal(t, src.shards[2][0].ID, bound.TrimSafe, "the previous bound may be trimmed, the bound itself is kept")

	// Someone else trims past the bound while changes are pending: "lost"
	// is only in the trimmed range.
	src.put(2, "user", "lost")
	src.put(2, "user", "after")
	require.NoError(t, src.TrimMDLog(context.Background(), "", 2, src.shards[2][2].ID))

	// The exporter detects it, re-runs the full sync (which has "lost"),
	// and counts it.
	var sawRevoke bool
	var full []string
	for len(full) == 0 || !sawRevoke {
		m, err := a.s.Recv()
		require.NoError(t, err)
		if m.GetRevoke() != nil {
			sawRevoke = true
			a.subscribe(fullUnit)
			a.subscribe(mdUnit(2))
		}
		if bt := m.GetBatch(); bt != nil {
			require.Equal(t, v1.LogType_LOG_TYPE_METADATA_FULL, bt.GetShard().GetLogType(), "no incremental batch while the re-sync runs")
			full = append(full, names(bt)...)
			a.ack(bt)
		}
	}
	require.Contains(t, full, "user:lost:put")
	rb, _, err := r.store.Get(checkpoint.UnitKey("zone-b", mdUnit(2)))
	require.NoError(t, err)
	require.Equal(t, uint32(1), rb.Resyncs)
	require.Equal(t, src.shards[2][len(src.shards[2])-1].ID, rb.Marker, "bound moved to the head")
}

// Every mdlog shard trimmed past its bound at once: the shards detect it
// side by side, each stopping the others' subscriptions; none may wait for
// another (they did: a deadlock), and the full sync runs again.
func TestManyShardsTrimmedAtOnce(t *testing.T) {
	src := newFakeSource()
	r := newRig(t, src, filepath.Join(t.TempDir(), "b.db"))
	a := r.dial(t, "a1")
	a.fullSync(t, r)
	for n := range uint32(4) {
		a.subscribe(mdUnit(n))
	}
	for n := range 4 {
		src.put(n, "user", fmt.Sprintf("u%d", n))
	}
	for acked := 0; acked < 4; {
		b := a.next()
		a.ack(b)
		acked += len(b.GetEntries())
	}
	for n := range 4 {
		waitBound(t, r.store, mdUnit(uint32(n)), func(b checkpoint.Bound) bool { return b.Marker == src.shards[n][0].ID })
		src.put(n, "user", fmt.Sprintf("lost%d", n))
		src.put(n, "user", fmt.Sprintf("after%d", n))
		require.NoError(t, src.TrimMDLog(context.Background(), "", n, src.shards[n][1].ID))
	}
	// Act as an applier: ack everything, subscribe again what is revoked.
	var full []string
	deadline := time.Now().Add(10 * time.Second)
	for !slices.Contains(full, "user:lost3:put") || !slices.Contains(full, "user:lost0:put") {
		require.True(t, time.Now().Before(deadline), "no full re-sync within 10 s (full sync so far: %v)", full)
		m, err := a.s.Recv()
		require.NoError(t, err)
		if rv := m.GetRevoke(); rv != nil {
			a.s.Send(&v1.ReplicateRequest{Msg: &v1.ReplicateRequest_Subscribe{Subscribe: &v1.Subscribe{Shard: rv.GetShard()}}})
		}
		if bt := m.GetBatch(); bt != nil {
			if bt.GetShard().GetLogType() == v1.LogType_LOG_TYPE_METADATA_FULL {
				full = append(full, names(bt)...)
			}
			a.ack(bt)
		}
	}
}

func TestTrimPointsIsTheLowestOverDestinations(t *testing.T) {
	st, err := checkpoint.Open(filepath.Join(t.TempDir(), "b.db"))
	require.NoError(t, err)
	defer st.Close()
	e := &Exporter{cfg: Config{Store: st}}
	k := func(dest string, shard uint32) checkpoint.Key {
		return checkpoint.Key{Destination: dest, Log: checkpoint.LogMetadata, Shard: shard}
	}
	require.NoError(t, st.Put(
		checkpoint.Entry{Key: k("b", 0), Bound: checkpoint.Bound{TrimSafe: "1_1795609532.671183_40.1"}},
		checkpoint.Entry{Key: k("c", 0), Bound: checkpoint.Bound{TrimSafe: "1_1795609530.377534_5.1"}},
		checkpoint.Entry{Key: k("b", 1), Bound: checkpoint.Bound{TrimSafe: "1_1795609532.671183_40.1"}},
		checkpoint.Entry{Key: k("c", 1), Bound: checkpoint.Bound{}}, // c has not acked shard 1: keep it all
	))
	p, err := e.TrimPoints(rgwlog.LogMetadata)
	require.NoError(t, err)
	require.Equal(t, map[int]string{0: "1_1795609530.377534_5.1"}, p)
}

func TestThrottle(t *testing.T) {
	st := &stream{limiter: newLimiter(1000)}
	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	require.NoError(t, st.throttle(ctx, 800), "within the burst")
	// 5000 more bytes at 1000 B/s cannot go out before the deadline: the
	// limiter says so at once instead of letting them through.
	require.Error(t, st.throttle(ctx, 5000))
	require.NoError(t, (&stream{}).throttle(ctx, 1<<40), "no limit configured")
}

func TestEmptyShardStartsFromTheBeginning(t *testing.T) {
	src := newFakeSource()
	src.put(0, "user", "x")
	require.NoError(t, src.TrimMDLog(context.Background(), "", 0, src.shards[0][0].ID))
	r := newRig(t, src, filepath.Join(t.TempDir(), "b.db"))
	r.dial(t, "a1")
	b, ok, err := r.store.Get(checkpoint.UnitKey("zone-b", mdUnit(0)))
	require.NoError(t, err)
	require.True(t, ok)
	require.Equal(t, "", b.Marker, "an empty (trimmed) shard starts at the beginning, not at a trimmed head")
}

func TestDrainTakesAcksThenEndsTheStream(t *testing.T) {
	src := newFakeSource()
	r := newRig(t, src, filepath.Join(t.TempDir(), "b.db"))
	a := r.dial(t, "a1")
	a.fullSync(t, r)
	for _, u := range []string{"u1", "u2", "u3", "u4", "u5", "u6", "u7"} {
		src.put(1, "user", u)
	}
	a.subscribe(mdUnit(1))
	b := a.next() // in flight when the drain starts
	r.exp.Drain()
	a.ack(b)
	waitBound(t, r.store, mdUnit(1), func(bd checkpoint.Bound) bool { return bd.Marker == b.GetThroughMarker() })
	// Nothing new is sent (the window had room for more), and the stream ends.
	for {
		m, err := a.s.Recv()
		if err != nil {
			require.Contains(t, err.Error(), "shutting down")
			break
		}
		if nb := m.GetBatch(); nb != nil {
			require.Equal(t, b.GetSeq()+1, nb.GetSeq(), "only what was already in flight may arrive")
			a.ack(nb)
		}
	}
}

// biEntry is a complete bilog entry as the gateway logs it.
func biEntry(op, obj, inst string, epoch uint64, versioned bool) rgwadmin.BILogEntry {
	e := rgwadmin.BILogEntry{Op: op, Object: obj, Instance: inst, State: "complete", Versioned: versioned}
	e.Ver.Epoch = epoch
	return e
}

func TestOpsFromBILog(t *testing.T) {
	bs := rgwlog.BucketShard{Key: "b:inst:3", Bucket: "b", Instance: "inst", Shard: 3}
	ent := biEntry
	// Entries as the lab's gateway writes them (16.2.15): a versioned put
	// is write+link_olh; a suspended put is write+link_olh without instance.
	refs := opsFromBILog(bs, []rgwadmin.BILogEntry{
		ent("write", "plain", "", 5, false),
		ent("del", "plain", "", 6, false),
		ent("write", "doc", "V1", 15, true),
		ent("link_olh", "doc", "V1", 2, true),
		ent("write", "doc", "", 19, true),
		ent("link_olh", "doc", "", 3, true),
		ent("link_olh_del", "gone", "M1", 4, true),
		ent("unlink_instance", "doc", "V1", 5, true),
		// A version delete as the gateway logs it: unlink_instance with the
		// OLH epoch, then del with the head object's RADOS version.
		ent("write", "old", "V7", 535, true),
		ent("link_olh", "old", "V7", 2, true),
		ent("unlink_instance", "old", "V7", 4, true),
		ent("del", "old", "V7", 536, true),
		// A del of a version whose unlink was in an earlier page: nothing
		// (the unlink carried the delete, with its epoch).
		ent("del", "prev", "V8", 540, true),
		// V1, V2, removal of V1: the removal goes after V2 (in its own
		// place, not V1's), or V2 would be written below the key's epoch.
		ent("link_olh", "ord", "V1", 2, true),
		ent("link_olh", "ord", "V2", 3, true),
		ent("unlink_instance", "ord", "V1", 4, true),
		{Op: "write", Object: "pending", State: "pending"},
	})
	type r struct {
		key, version string
		kind         v1.ObjectOpKind
		epoch        uint64
	}
	var got []r
	for _, x := range refs {
		got = append(got, r{x.key, x.version, x.kind, x.epoch})
	}
	require.Equal(t, []r{
		// Reconciled: the last entry of the key stands. No epoch: in an
		// unversioned bucket ver.epoch is the head object's RADOS version,
		// and an epoch on the destination write makes an undeletable OLH.
		{"plain", "", v1.ObjectOpKind_OBJECT_OP_KIND_UNSPECIFIED, 0},
		{"doc", "null", v1.ObjectOpKind_OBJECT_OP_KIND_PUT, 3},
		{"gone", "M1", v1.ObjectOpKind_OBJECT_OP_KIND_DELETE_MARKER, 4},
		{"doc", "V1", v1.ObjectOpKind_OBJECT_OP_KIND_DELETE_VERSION, 5},
		{"old", "V7", v1.ObjectOpKind_OBJECT_OP_KIND_DELETE_VERSION, 4},
		{"ord", "V2", v1.ObjectOpKind_OBJECT_OP_KIND_PUT, 3},
		{"ord", "V1", v1.ObjectOpKind_OBJECT_OP_KIND_DELETE_VERSION, 4},
	}, got)
}

// The null version's removal as the lab's gateway logs it (FACTS.md
// section 13): DELETE ?versionId=null logs unlink_instance "" (with the OLH
// epoch) then del "" versioned; a DELETE in a suspended bucket logs
// link_olh_del "" then del "" versioned. The del carries nothing of its
// own. Fails on the code before: it became a removal of version "" (no
// version id: refused on zone-b, then retried as a copy of the key's
// current version without its id, a new null version on zone-b: make
// chaos seed 4's "only on the destination" null versions).
func TestOpsFromBILogNullVersionRemoval(t *testing.T) {
	bs := rgwlog.BucketShard{Key: "b:inst:6", Bucket: "b", Instance: "inst", Shard: 6}
	ent := biEntry
	type r struct {
		key, version string
		kind         v1.ObjectOpKind
		epoch        uint64
	}
	got := func(entries ...rgwadmin.BILogEntry) []r {
		var out []r
		for _, x := range opsFromBILog(bs, entries) {
			out = append(out, r{x.key, x.version, x.kind, x.epoch})
		}
		return out
	}
	// PUT k (unversioned), versioning Enabled, PUT k, DELETE k?versionId=null:
	// the removal of the null version stands for its earlier plain write.
	require.Equal(t, []r{
		{"k", "V1", v1.ObjectOpKind_OBJECT_OP_KIND_PUT, 2},
		{"k", "null", v1.ObjectOpKind_OBJECT_OP_KIND_DELETE_VERSION, 3},
	}, got(ent("write", "k", "", 76, false), ent("write", "k", "V1", 44, true), ent("link_olh", "k", "V1", 2, true),
		ent("unlink_instance", "k", "", 3, true), ent("del", "k", "", 80, true)))
	// Suspended: PUT k, DELETE k (a null delete marker replaces the null version).
	require.Equal(t, []r{
		{"k", "null", v1.ObjectOpKind_OBJECT_OP_KIND_DELETE_MARKER, 2},
	}, got(ent("write", "k", "", 53, false), ent("link_olh_del", "k", "", 2, true), ent("del", "k", "", 55, true)))
	// The del alone (its OLH op was in an earlier page): nothing.
	require.Empty(t, got(ent("del", "k", "", 80, true)))
	// Suspended: a null marker, its removal (the key is empty: the source
	// starts its epochs again, FACTS.md §30), then a plain null write: the
	// removal stays, in its place. Folded into the write (no epoch), it
	// was lost, and zone-b gave the write an epoch above the next version's
	// (make chaos seed 3, v/k00502). Fails on the code before.
	require.Equal(t, []r{
		{"k", "null", v1.ObjectOpKind_OBJECT_OP_KIND_DELETE_VERSION, 3},
		{"k", "", v1.ObjectOpKind_OBJECT_OP_KIND_UNSPECIFIED, 0},
	}, got(ent("link_olh_del", "k", "", 2, true), ent("del", "k", "", 55, true), ent("unlink_instance", "k", "", 3, true),
		ent("del", "k", "", 56, true), ent("write", "k", "", 57, false)))
	// The same with a null delete marker after the removal: the source
	// numbers it 2 again. Folded into the marker, the removal was lost:
	// zone-b's null version (epoch 6) was replaced by the marker in place,
	// its key never emptied, and the later versions (epochs 3 to 5) not
	// current there (make chaos seed 3 at b9a997a, v/k00002). Fails on the
	// code before.
	require.Equal(t, []r{
		{"k", "null", v1.ObjectOpKind_OBJECT_OP_KIND_DELETE_VERSION, 7},
		{"k", "null", v1.ObjectOpKind_OBJECT_OP_KIND_DELETE_MARKER, 2},
	}, got(ent("unlink_instance", "k", "", 7, true), ent("del", "k", "", 90, true), ent("link_olh_del", "k", "", 2, true),
		ent("del", "k", "", 92, true)))
}

// A tag or ACL change of an existing version (issue #11, hole 4), as the
// lab's gateway logs it (FACTS.md §7): a "write" of the instance with
// versioned false. It becomes a re-check of that version (what the
// source's index says now, with its epoch), not skipped; a new version's
// write (versioned true) still waits for its link_olh.
func TestOpsFromBILogAttrChanges(t *testing.T) {
	bs := rgwlog.BucketShard{Key: "b:inst", Bucket: "b", Instance: "inst", Shard: -1}
	ent := func(op, inst string, epoch uint64, versioned bool) rgwadmin.BILogEntry {
		e := rgwadmin.BILogEntry{Op: op, Object: "k", Instance: inst, State: "complete", Versioned: versioned}
		e.Ver.Epoch = epoch
		return e
	}
	refs := opsFromBILog(bs, []rgwadmin.BILogEntry{
		ent("write", "V1", 7638, true),
		ent("link_olh", "V1", 2, true),
		ent("write", "V2", 7701, true),
		ent("link_olh", "V2", 3, true),
		ent("write", "V1", 7639, false), // PUT ?tagging&versionId=V1
		ent("write", "V2", 7702, false), // PUT ?tagging (current)
		ent("write", "V1", 7641, false), // PUT ?acl&versionId=V1
	})
	type r struct {
		version string
		kind    v1.ObjectOpKind
		epoch   uint64
	}
	var got []r
	for _, x := range refs {
		got = append(got, r{x.version, x.kind, x.epoch})
	}
	require.Equal(t, []r{
		{"V2", v1.ObjectOpKind_OBJECT_OP_KIND_UNSPECIFIED, 0},
		{"V1", v1.ObjectOpKind_OBJECT_OP_KIND_UNSPECIFIED, 0},
	}, got, "each version re-checked once, in the place of its last change; never with the write's RADOS epoch")

	// Alone in a page (the versions' link_olh in earlier pages).
	refs = opsFromBILog(bs, []rgwadmin.BILogEntry{ent("write", "V1", 7639, false)})
	require.Len(t, refs, 1)
	require.Equal(t, "V1", refs[0].version)
	require.Equal(t, v1.ObjectOpKind_OBJECT_OP_KIND_UNSPECIFIED, refs[0].kind)
}

// fakeObjects is a source's S3 side for buildOp: versions by key/id; Stat
// cannot see delete markers, as on the real gateway.
type fakeObjects struct {
	versions map[string]rgwobj.ListEntry // key+"\x00"+version id
}

func (f *fakeObjects) StatRead(ctx context.Context, bucket, key, versionID string, _ int64) (rgwobj.ObjectInfo, []byte, error) {
	info, err := f.Stat(ctx, bucket, key, versionID)
	return info, nil, err // the objects are empty
}

func (f *fakeObjects) Stat(_ context.Context, bucket, key, versionID string) (rgwobj.ObjectInfo, error) {
	if versionID == "" {
		versionID = "null"
		for _, le := range f.versions {
			if le.Key == key && le.IsLatest {
				versionID = le.VersionID // the current one
			}
		}
	}
	le, ok := f.versions[key+"\x00"+versionID]
	if !ok || le.DeleteMarker {
		return rgwobj.ObjectInfo{}, rgwobj.ErrNotFound
	}
	return rgwobj.ObjectInfo{Bucket: bucket, Key: key, VersionID: le.VersionID, Owner: le.Owner}, nil
}

func (f *fakeObjects) Get(context.Context, string, string, string, int64, int64) (io.ReadCloser, error) {
	panic("not used: the objects are empty")
}

func (f *fakeObjects) ListShard(context.Context, string, string, string, int) (rgwobj.ListPage, error) {
	panic("not used")
}

func (f *fakeObjects) FindVersion(_ context.Context, _, key, versionID string) (rgwobj.ListEntry, bool, error) {
	le, ok := f.versions[key+"\x00"+versionID]
	return le, ok, nil
}

func (f *fakeObjects) FindVersionInBucket(ctx context.Context, bucket, key, versionID string) (rgwobj.ListEntry, bool, error) {
	return f.FindVersion(ctx, bucket, key, versionID)
}

// A retry names only a key and a version: the op it becomes is what the
// source's index says now, with the version's own epoch (chaos found a
// retried version written without one: the destination gave it a newer
// epoch than a later version and made it current).
func TestBuildOpRetryOfAVersion(t *testing.T) {
	src := newFakeSource()
	src.blobs["bucket.instance:vb:inst"] = `{"data":{"bucket_info":{"owner":"alice","bucket":{"tenant":""}}}}`
	objs := &fakeObjects{versions: map[string]rgwobj.ListEntry{
		"k\x00V1":   {Key: "k", VersionID: "V1", VersionedEpoch: 2, Owner: "alice"},
		"k\x00M1":   {Key: "k", VersionID: "M1", VersionedEpoch: 3, DeleteMarker: true},
		"n\x00null": {Key: "n", VersionID: "null", VersionedEpoch: 5, Owner: "alice"},
	}}
	e := &Exporter{cfg: Config{Source: src, Objects: objs, InlineMax: 1 << 20}}
	bs := rgwlog.BucketShard{Key: "vb:inst:3", Bucket: "vb", Instance: "inst", Shard: 3}
	var budget atomic.Int64
	budget.Store(1 << 20)
	build := func(key, version string) *v1.ObjectOp {
		op, err := e.buildOp(context.Background(), objRef{bs: bs, key: key, version: version}, &budget)
		require.NoError(t, err)
		return op
	}
	op := build("k", "V1")
	require.Equal(t, v1.ObjectOpKind_OBJECT_OP_KIND_PUT, op.GetKind())
	require.EqualValues(t, 2, op.GetVersionedEpoch())
	op = build("k", "M1")
	require.Equal(t, v1.ObjectOpKind_OBJECT_OP_KIND_DELETE_MARKER, op.GetKind(), "a delete marker stays one (Stat cannot see it)")
	require.EqualValues(t, 3, op.GetVersionedEpoch())
	require.Equal(t, "alice", op.GetOwner())
	op = build("k", "V0")
	require.Equal(t, v1.ObjectOpKind_OBJECT_OP_KIND_DELETE_VERSION, op.GetKind(), "a version gone from the source")
	// A retried version delete keeps the epoch of its unlink (stored with
	// the retry): without it zone-b would number the delete itself.
	op, err := e.buildOp(context.Background(), objRef{bs: bs, key: "k", version: "V0", epoch: 9}, &budget)
	require.NoError(t, err)
	require.Equal(t, v1.ObjectOpKind_OBJECT_OP_KIND_DELETE_VERSION, op.GetKind())
	require.EqualValues(t, 9, op.GetVersionedEpoch())
	op = build("n", "null")
	require.Equal(t, v1.ObjectOpKind_OBJECT_OP_KIND_PUT, op.GetKind())
	require.EqualValues(t, 5, op.GetVersionedEpoch(), "the null version of a suspended bucket keeps its epoch")

	// An unversioned object named without a version: no epoch, ever.
	objs.versions["p\x00null"] = rgwobj.ListEntry{Key: "p", VersionID: "null", Owner: "alice"}
	op, err = e.buildOp(context.Background(), objRef{bs: bs, key: "p", epoch: 77}, &budget)
	require.NoError(t, err)
	require.Equal(t, "null", op.GetVersionId())
	require.Zero(t, op.GetVersionedEpoch())
}

// An object named without a version (a plain write logged while the
// bucket was suspended, or its retry) is the null version: when the key's
// current one is another version or none, the op is what the source's
// index says of the null version. Fails on the code before: the current
// version was copied without its id (a new null version on zone-b: make
// chaos seed 4), a delete marker's key was deleted plainly.
func TestBuildOpNullVersionWhenTheCurrentIsAnother(t *testing.T) {
	src := newFakeSource()
	src.blobs["bucket.instance:vb:inst"] = `{"data":{"bucket_info":{"owner":"alice","bucket":{"tenant":""}}}}`
	objs := &fakeObjects{versions: map[string]rgwobj.ListEntry{
		"s\x00V2":   {Key: "s", VersionID: "V2", VersionedEpoch: 4, Owner: "alice", IsLatest: true},
		"s\x00null": {Key: "s", VersionID: "null", VersionedEpoch: 3, Owner: "alice"},
		"d\x00M1":   {Key: "d", VersionID: "M1", VersionedEpoch: 6, DeleteMarker: true, IsLatest: true},
		"d\x00V1":   {Key: "d", VersionID: "V1", VersionedEpoch: 5, Owner: "alice"},
	}}
	e := &Exporter{cfg: Config{Source: src, Objects: objs, InlineMax: 1 << 20}}
	bs := rgwlog.BucketShard{Key: "vb:inst:3", Bucket: "vb", Instance: "inst", Shard: 3}
	var budget atomic.Int64
	budget.Store(1 << 20)
	build := func(key string) *v1.ObjectOp {
		op, err := e.buildOp(context.Background(), objRef{bs: bs, key: key}, &budget)
		require.NoError(t, err)
		return op
	}
	op := build("s")
	require.Equal(t, v1.ObjectOpKind_OBJECT_OP_KIND_PUT, op.GetKind())
	require.Equal(t, "null", op.GetVersionId(), "the null version, not the current V2 without its id")
	require.EqualValues(t, 3, op.GetVersionedEpoch())
	for _, key := range []string{"d", "gone"} {
		op = build(key)
		require.Equal(t, v1.ObjectOpKind_OBJECT_OP_KIND_DELETE_VERSION, op.GetKind(), key)
		require.Equal(t, "null", op.GetVersionId(), "%s: the null version removed, no delete marker laid", key)
	}
}

// fullSync subscribes the metadata full sync, acks every batch of it and
// waits until its bound says done.
func (a *applierStream) fullSync(t *testing.T, r *rig) {
	t.Helper()
	a.subscribe(fullUnit)
	for b := a.next(); ; b = a.next() {
		a.ack(b)
		if !b.GetMore() {
			break
		}
	}
	waitBound(t, r.store, fullUnit, func(b checkpoint.Bound) bool { return b.Phase == checkpoint.PhaseDone })
}

// TestReshardedInstanceIsRechecked: the old instance of a reshard is
// removed by the source moments after its last logged write, and the
// removal is logged nowhere (FACTS.md section 17). Fetched in that moment
// it was written to zone-b and stayed there for good (CI: "bucket.instance
// …: only on the destination (deleted on the source)"); now it is fetched
// once more after RecheckDelay, found gone, and deleted.
func TestReshardedInstanceIsRechecked(t *testing.T) {
	blob, err := os.ReadFile("../rgwlog/testdata/bucket-instance-resharded.json")
	require.NoError(t, err)
	const key = "rsp1:e5a1c870-2a31-43c0-85d2-993838821318.4177.2"
	src := newFakeSource()
	r := newRig(t, src, filepath.Join(t.TempDir(), "b.db"), func(c *Config) { c.RecheckDelay = 300 * time.Millisecond })
	a := r.dial(t, "a1")
	a.fullSync(t, r)
	a.subscribe(mdUnit(1))
	src.putBlob(1, "bucket.instance", key, blob)
	b := a.next()
	require.Equal(t, []string{"bucket.instance:" + key + ":put"}, names(b), "written as the source has it now")
	src.vanish("bucket.instance", key) // removed, no log entry
	a.ack(b)
	bound := waitBound(t, r.store, mdUnit(1), func(b checkpoint.Bound) bool { return len(b.Retries) == 1 })
	require.Equal(t, recheckMark, bound.Retries[0].Error)
	b = a.next()
	require.Equal(t, []string{"bucket.instance:" + key + ":del"}, names(b), "gone at the source: deleted")
	a.ack(b)
	waitBound(t, r.store, mdUnit(1), func(b checkpoint.Bound) bool { return len(b.Retries) == 0 })

	// A plain instance is not looked at again.
	plain, err := os.ReadFile("../rgwlog/testdata/bucket-instance-plain.json")
	require.NoError(t, err)
	src.putBlob(1, "bucket.instance", key, plain)
	b = a.next()
	require.Equal(t, []string{"bucket.instance:" + key + ":put"}, names(b))
	a.ack(b)
	through := b.GetThroughMarker()
	bound = waitBound(t, r.store, mdUnit(1), func(b checkpoint.Bound) bool { return b.Marker == through })
	require.Empty(t, bound.Retries, "no re-check of an instance that is not being resharded")
}

// TestDeletedBucketInstanceIsSentAsDelete: a removed bucket's instance as
// Tentacle keeps it (flags 64, recorded on the lab) is sent as a delete:
// put onto zone-b's copy it kills a Tentacle gateway (FACTS.md section 19).
func TestDeletedBucketInstanceIsSentAsDelete(t *testing.T) {
	blob, err := os.ReadFile("../rgwlog/testdata/tentacle-bucket-instance-deleted.json")
	require.NoError(t, err)
	const key = "rec-del:33dbf5ba-3f2f-45c9-9d8f-2b940f149404.4186.1"
	src := newFakeSource()
	r := newRig(t, src, filepath.Join(t.TempDir(), "b.db"))
	a := r.dial(t, "a1")
	a.fullSync(t, r)
	a.subscribe(mdUnit(2))
	src.putBlob(2, "bucket.instance", key, blob)
	b := a.next()
	require.Equal(t, []string{"bucket.instance:" + key + ":del"}, names(b))
	require.Empty(t, b.GetEntries()[0].GetBlob())
	a.ack(b)
}

// TestPendingRecheckIsCaughtUp: a shard whose only pending item is the
// scheduled re-check of a delete it applied is caught up (make demo ended
// with "metadata 56/64 shards caught up, 8 behind", each of the 8 behind 0
// entries: their deletes' re-checks, 30 s later, held them out of
// "caught up"). The re-check shows as what the shard waits for.
func TestPendingRecheckIsCaughtUp(t *testing.T) {
	src := newFakeSource()
	src.put(1, "bucket", "b1")
	r := newRig(t, src, filepath.Join(t.TempDir(), "b.db"), func(c *Config) { c.RecheckDelay = time.Hour })
	a := r.dial(t, "a1")
	a.fullSync(t, r)
	a.subscribe(mdUnit(1))
	src.del(1, "bucket", "b1")
	b := a.next()
	require.Equal(t, []string{"bucket:b1:del"}, names(b))
	a.ack(b)
	waitBound(t, r.store, mdUnit(1), func(b checkpoint.Bound) bool { return len(b.Retries) == 1 })
	cl := v1.NewStatusServiceClient(r.conn)
	var ss *v1.ShardStatus
	require.Eventually(t, func() bool {
		st, err := cl.Status(context.Background(), &v1.StatusRequest{Destination: "zone-b"})
		require.NoError(t, err)
		for _, s := range st.GetDestinations()[0].GetShards() {
			if s.GetShard().GetLogType() == v1.LogType_LOG_TYPE_METADATA && s.GetShard().GetShard() == 1 {
				ss = s
			}
		}
		return ss != nil && ss.GetPhase() == v1.ShardPhase_SHARD_PHASE_CAUGHT_UP
	}, 5*time.Second, 50*time.Millisecond, "phase %v", ss.GetPhase())
	require.Zero(t, ss.GetRetries())
	require.Contains(t, ss.GetWaitingFor(), "re-check")
}

// TestBILogTrimPoints: a bucket index shard's bilog is trimmed below the
// lowest bound over the destinations that have one for it (the bound's
// own entry kept), never while one of them lists it (full sync) or has
// read none of it; markers order by index_ver, with or without the
// "<shard>#" the gateway puts before them (issue #14 item 6: with the
// source's sync thread off, nothing else trims them).
func TestBILogTrimPoints(t *testing.T) {
	st, err := checkpoint.Open(filepath.Join(t.TempDir(), "b.db"))
	require.NoError(t, err)
	defer st.Close()
	data := &fakeData{bilogs: map[string][]rgwadmin.BILogEntry{}}
	e := &Exporter{cfg: Config{Store: st, Data: data, Metrics: NewMetrics(nil)}, dataShards: 1, log: slog.New(slog.DiscardHandler)}
	k := func(dest, inst string) checkpoint.Key {
		return checkpoint.Key{Destination: dest, Log: checkpoint.LogBucketIndex, Instance: inst}
	}
	inc := func(marker string) checkpoint.Bound {
		return checkpoint.Bound{Phase: checkpoint.PhaseIncremental, Marker: marker}
	}
	const a, b, c, d = "b1:i1", "b1:i2:1", "t/b2:i3:0", "b3:i4:7"
	require.NoError(t, st.Put(
		checkpoint.Entry{Key: k("zb", a), Bound: inc("00000000012.5.0")},
		checkpoint.Entry{Key: k("zc", a), Bound: inc("00000000009.77777.0")}, // lower, though "7" > "5" as strings
		checkpoint.Entry{Key: k("zb", b), Bound: inc("1#00000000004.1.1")},
		checkpoint.Entry{Key: k("zc", b), Bound: checkpoint.Bound{Phase: checkpoint.PhaseBucketFull}}, // zc lists it
		checkpoint.Entry{Key: k("zb", c), Bound: inc("0#00000000002.3.0")},
		checkpoint.Entry{Key: k("zc", c), Bound: inc("")}, // zc has read none of it
		checkpoint.Entry{Key: k("zb", d), Bound: inc("7#00000000006.3.0")},
	))
	p, err := e.BILogTrimPoints()
	require.NoError(t, err)
	require.Equal(t, map[string]string{a: "00000000009", d: "00000000006"}, p)

	for v := 1; v <= 12; v++ {
		data.bilogs[a] = append(data.bilogs[a], rgwadmin.BILogEntry{OpID: fmt.Sprintf("%011d.%d.0", v, 100+v)})
	}
	done := map[string]string{}
	require.NoError(t, e.trimBILogs(context.Background(), done))
	require.ElementsMatch(t, []string{a + "@00000000009", d + "@00000000006"}, data.trims)
	require.Len(t, data.bilogs[a], 4, "entries 9 (the lowest bound's), 10, 11, 12 are kept")
	require.Equal(t, "00000000009.109.0", data.bilogs[a][0].OpID)
	require.NoError(t, e.trimBILogs(context.Background(), done))
	require.Len(t, data.trims, 2, "not trimmed again to the same marker")

	require.NoError(t, st.Put(checkpoint.Entry{Key: k("zb", "b9:i9"), Bound: inc("garbage")}))
	_, err = e.BILogTrimPoints()
	require.ErrorContains(t, err, "bucket-index log marker")
}

// The re-check of a resharded instance found it still at the source (its
// removal comes later on a busy gateway): it was written once more and
// never looked at again, and stayed on zone-b for good (make chaos seed 1
// extended at 2236e6c: two old instances "only on the destination"). It
// is looked at again after each re-check that finds it, until it is gone.
// On the code before, the second re-check never came.
func TestReshardedInstanceIsRecheckedUntilGone(t *testing.T) {
	blob, err := os.ReadFile("../rgwlog/testdata/bucket-instance-resharded.json")
	require.NoError(t, err)
	const key = "rsp1:e5a1c870-2a31-43c0-85d2-993838821318.4177.2"
	src := newFakeSource()
	r := newRig(t, src, filepath.Join(t.TempDir(), "b.db"), func(c *Config) { c.RecheckDelay = 200 * time.Millisecond })
	a := r.dial(t, "a1")
	a.fullSync(t, r)
	a.subscribe(mdUnit(1))
	src.putBlob(1, "bucket.instance", key, blob)
	b := a.next()
	require.Equal(t, []string{"bucket.instance:" + key + ":put"}, names(b))
	a.ack(b)
	b = a.next() // the first re-check: still there
	require.Equal(t, []string{"bucket.instance:" + key + ":put"}, names(b))
	src.vanish("bucket.instance", key)
	a.ack(b)
	b = a.next()
	require.Equal(t, []string{"bucket.instance:" + key + ":del"}, names(b), "looked at again: gone, deleted")
	a.ack(b)
}
