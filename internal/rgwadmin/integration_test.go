//go:build integration

package rgwadmin

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/rgwsync/rgwsync/internal/testkit/labtest"
)

// Integration tests: every call of the client against the real two-zone lab
// (go test -tags integration ./internal/rgwadmin/). Names are random: the lab
// may be shared with other tests.

func recentTime(t *testing.T, what string, ts time.Time) {
	t.Helper()
	if ts.IsZero() || time.Since(ts).Abs() > 10*time.Minute {
		t.Errorf("%s: timestamp %v is not recent", what, ts)
	}
}

// mdlogMarkers is the newest marker of every mdlog shard.
func mdlogMarkers(t *testing.T, c *Client, period string, n int) []string {
	t.Helper()
	out := make([]string, n)
	for i := range n {
		si, err := c.MDLogShardInfo(testCtx(t), period, i)
		require.NoError(t, err)
		out[i] = si.Marker
	}
	return out
}

// listMDLogAll pages through an mdlog shard after marker, max entries a page.
func listMDLogAll(t *testing.T, c *Client, period string, shard int, marker string, max int) (entries []MDLogEntry, pages int) {
	t.Helper()
	for {
		p, err := c.ListMDLog(testCtx(t), period, shard, marker, max)
		require.NoError(t, err)
		pages++
		entries = append(entries, p.Entries...)
		if len(p.Entries) > 0 {
			require.Equal(t, p.Entries[len(p.Entries)-1].ID, p.Marker, "page marker is the last entry's id")
		}
		if !p.Truncated {
			return entries, pages
		}
		require.LessOrEqual(t, len(p.Entries), max)
		marker = p.Marker
		require.Less(t, pages, 10000, "mdlog paging does not end")
	}
}

func TestLabMDLog(t *testing.T) {
	t.Parallel()
	lab := labtest.Get(t)
	a := labClient(t, lab.ZoneA)
	ctx := testCtx(t)

	info, err := a.MDLogInfo(ctx)
	require.NoError(t, err)
	require.Equal(t, 64, info.NumShards)
	require.NotEmpty(t, info.Period)
	require.Positive(t, info.RealmEpoch)

	before := mdlogMarkers(t, a, info.Period, info.NumShards)
	uids := map[string]bool{}
	for _, tenant := range []string{"", "", labtest.RandomName("t")} {
		uid, _, _ := labUser(t, tenant)
		uids[uid] = true
	}

	// Each change is logged twice (write, complete) on the shard of its key,
	// so every shard that holds one of ours has at least two entries: enough
	// to page with max=1 and max=2.
	type found struct {
		shard   int
		entries []MDLogEntry // ours, in order
	}
	var shards []found
	seen := map[string][]string{}
	for i := range info.NumShards {
		si, err := a.MDLogShardInfo(ctx, info.Period, i)
		require.NoError(t, err)
		if si.Marker == before[i] {
			continue
		}
		recentTime(t, "shard info last_update", si.LastUpdate)
		// Alternate the explicit period and the gateway's default one.
		period := info.Period
		if i%2 == 1 {
			period = ""
		}
		one, pages := listMDLogAll(t, a, period, i, before[i], 1)
		two, _ := listMDLogAll(t, a, period, i, before[i], 2)
		all, err := a.ListMDLog(ctx, period, i, before[i], 1000)
		require.NoError(t, err)
		n := min(len(one), len(two), len(all.Entries))
		require.Equal(t, all.Entries[:n], one[:n], "paging by 1 = one page")
		require.Equal(t, all.Entries[:n], two[:n], "paging by 2 = one page")
		var ours []MDLogEntry
		for _, e := range one {
			if e.Section == "user" && uids[e.Name] {
				ours = append(ours, e)
				seen[e.Name] = append(seen[e.Name], e.Status)
				recentTime(t, "mdlog entry", e.Timestamp)
				assert.NotEmpty(t, e.ID)
				if lab.Release() == "pacific" { // 0 on Tentacle (FACTS.md §23); rgwsync does not use it
					assert.NotZero(t, e.WriteVersion.Ver, "write_version")
				}
			}
		}
		if len(ours) > 0 {
			if len(one) > 1 {
				require.Greater(t, pages, 1, "shard %d: max=1 must need several pages", i)
			}
			shards = append(shards, found{shard: i, entries: ours})
		}
	}
	statuses := []string{"write", "complete"}
	if lab.Release() == "tentacle" {
		statuses = []string{"complete"} // one entry per change (FACTS.md §23)
	}
	for uid := range uids {
		assert.Equal(t, statuses, seen[uid], "mdlog entries of user %s", uid)
	}
	require.NotEmpty(t, shards)

	// Trim up to (and including) our first entry: it is gone, the next stays.
	// (On a shared lab this also trims older entries of that shard.)
	s := shards[0]
	for _, f := range shards {
		if len(f.entries) > len(s.entries) {
			s = f
		}
	}
	if len(s.entries) < 2 && lab.Release() != "pacific" {
		t.Skipf("%s: no mdlog shard with two of the test's entries (one per change): the trim is not checked", lab.Release())
	}
	require.GreaterOrEqual(t, len(s.entries), 2)
	require.NoError(t, a.TrimMDLog(ctx, info.Period, s.shard, s.entries[0].ID))
	after, err := a.ListMDLog(ctx, info.Period, s.shard, before[s.shard], 1000)
	require.NoError(t, err)
	ids := make([]string, 0, len(after.Entries))
	for _, e := range after.Entries {
		ids = append(ids, e.ID)
	}
	assert.NotContains(t, ids, s.entries[0].ID, "trimmed entry still listed")
	assert.Contains(t, ids, s.entries[1].ID, "entry after the trim marker gone")
	all, err := a.ListMDLog(ctx, info.Period, s.shard, "", 1000)
	require.NoError(t, err)
	for _, e := range all.Entries {
		assert.Greater(t, e.ID, s.entries[0].ID, "entry at or before the trim marker still listed")
	}
	// Again: the gateway answers 500 (nothing to remove); the client sees
	// from the listing that the goal is reached.
	require.NoError(t, a.TrimMDLog(ctx, info.Period, s.shard, s.entries[0].ID))

	// An out-of-range mdlog shard is harmless on the gateway (unlike datalog).
	empty, err := a.MDLogShardInfo(ctx, "", 5000)
	require.NoError(t, err)
	assert.Equal(t, ShardInfo{}, empty)
}

func TestLabDataLog(t *testing.T) {
	t.Parallel()
	lab := labtest.Get(t)
	a := labClient(t, lab.ZoneA)
	ctx := testCtx(t)

	info, err := a.DataLogInfo(ctx)
	require.NoError(t, err)
	require.Equal(t, 128, info.NumShards)

	before := make([]string, info.NumShards)
	for i := range before {
		si, err := a.DataLogShardInfo(ctx, i)
		require.NoError(t, err)
		before[i] = si.Marker
	}
	_, inst := labBucket(t, a, a, "", 24)

	type hit struct {
		shard int
		entry DataLogEntry
	}
	var ours []hit
	for i := range info.NumShards {
		si, err := a.DataLogShardInfo(ctx, i)
		require.NoError(t, err)
		if si.Marker == before[i] {
			continue
		}
		recentTime(t, "datalog shard info", si.LastUpdate)
		p, err := a.ListDataLog(ctx, i, before[i], 1000)
		require.NoError(t, err)
		for _, e := range p.Entries {
			assert.NotEmpty(t, e.LogID, "log_id (extra-info)")
			assert.Equal(t, "bucket", e.EntityType)
			recentTime(t, "datalog entry", e.Timestamp)
			if strings.HasPrefix(e.Key, inst+":") {
				ours = append(ours, hit{i, e})
			}
		}
		if len(p.Entries) > 0 {
			// Read after the listing: entries may be added in between
			// (Tentacle writes its datalog entries asynchronously).
			after, err := a.DataLogShardInfo(ctx, i)
			require.NoError(t, err)
			assert.LessOrEqual(t, p.Entries[len(p.Entries)-1].LogID, after.Marker, "info marker is at or past the last entry")
		}
	}
	require.NotEmpty(t, ours, "no datalog entry for %s", inst)

	// Paging: a shard with at least two entries from its start. Each new
	// bucket adds up to 11 keys over 128 shards; add buckets until one
	// shard has two (almost always true after the first).
	shard, total := -1, 0
	for round := 0; shard < 0; round++ {
		require.Less(t, round, 10, "no datalog shard with 2 entries")
		for i := range info.NumShards {
			p, err := a.ListDataLog(ctx, i, "", 1000)
			require.NoError(t, err)
			if len(p.Entries) >= 2 {
				shard, total = i, len(p.Entries)
				break
			}
		}
		if shard < 0 {
			labBucket(t, a, a, "", 24)
		}
	}
	var paged []DataLogEntry
	marker, pages := "", 0
	for {
		p, err := a.ListDataLog(ctx, shard, marker, 1)
		require.NoError(t, err)
		pages++
		paged = append(paged, p.Entries...)
		if !p.Truncated {
			break
		}
		require.Len(t, p.Entries, 1)
		marker = p.Marker
		require.Equal(t, p.Entries[0].LogID, marker, "page marker is the entry's log_id")
	}
	require.GreaterOrEqual(t, pages, 2)
	require.GreaterOrEqual(t, len(paged), total)

	// Trim up to our first entry: it and everything before are gone.
	h := ours[0]
	require.NoError(t, a.TrimDataLog(ctx, h.shard, h.entry.LogID))
	p, err := a.ListDataLog(ctx, h.shard, "", 1000)
	require.NoError(t, err)
	for _, e := range p.Entries {
		assert.Greater(t, e.LogID, h.entry.LogID, "entry at or before the trim marker still listed")
	}
	require.NoError(t, a.TrimDataLog(ctx, h.shard, h.entry.LogID), "trim again")

	// The client refuses the shard ids that abort radosgw 16.2.15.
	for _, bad := range []int{info.NumShards, 5000, -1} {
		_, err = a.DataLogShardInfo(ctx, bad)
		assert.ErrorIs(t, err, ErrBadShard)
		_, err = a.ListDataLog(ctx, bad, "", 1)
		assert.ErrorIs(t, err, ErrBadShard)
		assert.ErrorIs(t, a.TrimDataLog(ctx, bad, "00000000000000000000:00000000000000000001"), ErrBadShard)
	}
	_, err = a.DataLogInfo(ctx)
	require.NoError(t, err, "gateway still up")
}

func TestLabBILog(t *testing.T) {
	t.Parallel()
	lab := labtest.Get(t)
	a := labClient(t, lab.ZoneA)
	ctx := testCtx(t)
	zoneA := zoneIDByAdmin(t, "zone-a")

	// 12 objects over 11 index shards: some shard has two.
	const nobj = 12
	_, inst := labBucket(t, a, a, "", nobj)

	whole, err := a.BILogInfo(ctx, inst)
	require.NoError(t, err)
	assert.False(t, whole.SyncStopped)
	assert.Contains(t, whole.BucketVer, "#")
	assert.Contains(t, whole.MaxMarker, "#")

	full, err := a.ListBILog(ctx, inst, "", 0)
	require.NoError(t, err)
	if lab.Release() == "tentacle" {
		// Tentacle lists a sharded instance whole without the "<shard>#"
		// of each op id (FACTS.md §23); per shard it has it. rgwsync lists
		// per shard only.
		for _, e := range full {
			assert.NotContains(t, e.OpID, "#", "%s lists the instance whole without shard numbers", lab.Release())
		}
		full = nil
		for i := range 11 {
			es, err := a.ListBILog(ctx, inst+":"+strconv.Itoa(i), "", 0)
			require.NoError(t, err)
			full = append(full, es...)
		}
	}
	objs := map[string]bool{}
	perShard := map[int][]BILogEntry{}
	for _, e := range full {
		objs[e.Object] = true
		sh, _, ok := strings.Cut(e.OpID, "#")
		require.True(t, ok, "op_id %q has no shard", e.OpID)
		n, err := strconv.Atoi(sh)
		require.NoError(t, err)
		perShard[n] = append(perShard[n], e)
		assert.Equal(t, "write", e.Op)
		assert.Equal(t, "complete", e.State)
		recentTime(t, "bilog entry", e.Timestamp)
		require.NotEmpty(t, e.ZonesTrace)
		assert.True(t, strings.HasPrefix(e.ZonesTrace[0], zoneA+":"), "zones_trace %v", e.ZonesTrace)
		assert.Positive(t, e.Ver.Pool)
	}
	assert.Len(t, objs, nobj)

	shard, most := -1, 0
	for n, es := range perShard {
		if len(es) > most {
			shard, most = n, len(es)
		}
	}
	require.GreaterOrEqual(t, most, 2)
	shardInst := inst + ":" + strconv.Itoa(shard)

	si, err := a.BILogInfo(ctx, shardInst)
	require.NoError(t, err)
	assert.NotContains(t, si.MaxMarker, "#", "one shard: max_marker without shard prefix")
	assert.Equal(t, strconv.Itoa(shard)+"#"+si.MaxMarker, perShard[shard][most-1].OpID)

	one, err := a.ListBILog(ctx, shardInst, "", 100)
	require.NoError(t, err)
	require.Equal(t, perShard[shard], one)
	for i := 1; i < len(one); i++ {
		assert.Equal(t, one[i-1].IndexVer+1, one[i].IndexVer, "index_ver contiguous for sequential writes (racing ops leave gaps: FACTS.md §31)")
	}
	// Listed from an index_ver alone, the entry of that number comes first
	// (how the exporter tells a gap from a trim: FACTS.md §31).
	from, err := a.ListBILog(ctx, shardInst, fmt.Sprintf("%011d", one[1].IndexVer), 1)
	require.NoError(t, err)
	require.Len(t, from, 1)
	assert.Equal(t, one[1].OpID, from[0].OpID, "listed from index_ver %d alone", one[1].IndexVer)
	// Page by one, the marker being the previous op_id ("N#…", '#' escaped).
	var paged []BILogEntry
	for marker := ""; ; {
		p, err := a.ListBILog(ctx, shardInst, marker, 1)
		require.NoError(t, err)
		if len(p) == 0 {
			break
		}
		require.Len(t, p, 1)
		paged = append(paged, p...)
		marker = p[0].OpID
		require.LessOrEqual(t, len(paged), len(one))
	}
	require.Equal(t, one, paged)

	// Trim the first entry of the shard, with the op_id as end marker.
	require.NoError(t, a.TrimBILog(ctx, shardInst, one[0].OpID))
	rest, err := a.ListBILog(ctx, shardInst, "", 100)
	require.NoError(t, err)
	require.Equal(t, one[1:], rest)
	// And the rest with max_marker (no shard prefix): the shard is empty.
	require.NoError(t, a.TrimBILog(ctx, shardInst, si.MaxMarker))
	rest, err = a.ListBILog(ctx, shardInst, "", 100)
	require.NoError(t, err)
	require.Empty(t, rest)
	require.NoError(t, a.TrimBILog(ctx, shardInst, si.MaxMarker), "trim again")
	// Other shards untouched.
	full2, err := a.ListBILog(ctx, inst, "", 0)
	require.NoError(t, err)
	assert.Len(t, full2, len(full)-most)

	// A tenant's bucket: "tenant/bucket:id[:shard]".
	tenant := labtest.RandomName("t")
	_, ak, sk := labUser(t, tenant)
	tc := labClient(t, lab.ZoneA, ak, sk)
	_, tinst := labBucket(t, tc, a, tenant, 2)
	require.True(t, strings.HasPrefix(tinst, tenant+"/"), tinst)
	tl, err := a.ListBILog(ctx, tinst, "", 0)
	require.NoError(t, err)
	require.Len(t, tl, 2)
	sh, _, _ := strings.Cut(tl[0].OpID, "#")
	if lab.Release() == "tentacle" { // no "<shard>#" in a whole listing (§23): a shard with entries
		for i := range 11 {
			if es, err := a.ListBILog(ctx, tinst+":"+strconv.Itoa(i), "", 0); err == nil && len(es) > 0 {
				sh = strconv.Itoa(i)
				break
			}
		}
	}
	tsi, err := a.BILogInfo(ctx, tinst+":"+sh)
	require.NoError(t, err)
	assert.NotEmpty(t, tsi.MaxMarker)
}

func TestLabMetadata(t *testing.T) {
	t.Parallel()
	lab := labtest.Get(t)
	a, b := labClient(t, lab.ZoneA), labClient(t, lab.ZoneB)
	ctx := testCtx(t)

	sections, err := a.ListMetadataSections(ctx)
	require.NoError(t, err)
	assert.Subset(t, sections, []string{"user", "bucket", "bucket.instance"})

	tenant := labtest.RandomName("t")
	uid, ak, sk := labUser(t, tenant) // "tenant$name": '$' in the query
	plain, _, _ := labUser(t, "")
	plain2, _, _ := labUser(t, "")

	// Key paging, two at a time.
	var keys []string
	pages := 0
	for marker := ""; ; {
		p, err := a.ListMetadataKeys(ctx, "user", marker, 2)
		require.NoError(t, err)
		pages++
		require.LessOrEqual(t, len(p.Keys), 2)
		assert.Equal(t, len(p.Keys), p.Count)
		keys = append(keys, p.Keys...)
		if !p.Truncated {
			break
		}
		require.NotEmpty(t, p.Marker)
		marker = p.Marker
		require.Less(t, pages, 100000)
	}
	assert.Greater(t, pages, 1)
	assert.Subset(t, keys, []string{uid, plain, plain2, "sync-system"})
	one, err := a.ListMetadataKeys(ctx, "user", "", 0)
	require.NoError(t, err)
	assert.Subset(t, one.Keys, keys, "one page of 1000 holds what the small pages held")

	// A tenant's bucket on zone-a: keys "tenant/bucket" and "tenant/bucket:id".
	tc := labClient(t, lab.ZoneA, ak, sk)
	bkey, inst := labBucket(t, tc, a, tenant, 1)

	// Copy user, bucket.instance, then bucket to zone-b.
	ublob, err := a.GetMetadata(ctx, "user", uid)
	require.NoError(t, err)
	assert.Contains(t, string(ublob), `"user_id":"`+uid+`"`)
	st, err := b.PutMetadata(ctx, "user", uid, ublob, "")
	require.NoError(t, err)
	assert.Equal(t, UpdateStatus{Applied: true, Status: "applied", Version: st.Version}, st)
	st, err = b.PutMetadata(ctx, "user", uid, ublob, "update-by-version")
	require.NoError(t, err)
	// Tentacle (20.2.4) applies an unchanged user by version, and creates
	// an absent key (FACTS.md §23); Pacific and Reef (18.2.7) skip both:
	// rgwsync does not use update-by-version by default.
	pacific := lab.Release() != "tentacle"
	assert.Equal(t, !pacific, st.Applied)
	if pacific {
		assert.Equal(t, "skipped", st.Status)
	}
	bblob, err := b.GetMetadata(ctx, "user", uid)
	require.NoError(t, err)
	assert.JSONEq(t, jsonField(t, ublob, "data"), jsonField(t, bblob, "data"))

	// update-by-version never creates a key: the absent key's version tag
	// ("") differs from the incoming one, so the gateway skips the write.
	p2blob, err := a.GetMetadata(ctx, "user", plain2)
	require.NoError(t, err)
	st, err = b.PutMetadata(ctx, "user", plain2, p2blob, "update-by-version")
	require.NoError(t, err)
	if pacific {
		assert.Equal(t, UpdateStatus{Applied: false, Status: "skipped", Version: "ver:0,tag:"}, st)
		_, err = b.GetMetadata(ctx, "user", plain2)
		require.ErrorIs(t, err, ErrNotFound)
	} else {
		assert.True(t, st.Applied, "Tentacle creates the absent key: %+v", st)
	}

	iblob, err := a.GetMetadata(ctx, "bucket.instance", inst)
	require.NoError(t, err)
	st, err = b.PutMetadata(ctx, "bucket.instance", inst, iblob, "")
	require.NoError(t, err)
	assert.True(t, st.Applied)
	assert.Equal(t, "applied", st.Status)
	st, err = b.PutMetadata(ctx, "bucket.instance", inst, iblob, "update-by-version")
	require.NoError(t, err)
	assert.Equal(t, !pacific, st.Applied, "same version again (Tentacle applies it: §23)")
	eblob, err := a.GetMetadata(ctx, "bucket", bkey)
	require.NoError(t, err)
	// The bucket entry point answers 200 without RGWX_UPDATE_STATUS.
	st, err = b.PutMetadata(ctx, "bucket", bkey, eblob, "")
	require.NoError(t, err)
	assert.True(t, st.Applied, "%+v", st)
	got, err := b.GetMetadata(ctx, "bucket", bkey)
	require.NoError(t, err)
	assert.JSONEq(t, jsonField(t, eblob, "data"), jsonField(t, got, "data"))
	// The copied user can use the copied bucket on zone-b.
	s3Do(t, labClient(t, lab.ZoneB, ak, sk), http.MethodGet, "/"+strings.TrimPrefix(bkey, tenant+"/"), nil)

	// Delete on zone-b, then it is gone.
	for _, d := range []struct{ section, key string }{{"bucket", bkey}, {"bucket.instance", inst}, {"user", uid}} {
		require.NoError(t, b.DeleteMetadata(ctx, d.section, d.key), "%s %s", d.section, d.key)
		_, err = b.GetMetadata(ctx, d.section, d.key)
		if d.section == "bucket.instance" && lab.Release() == "tentacle" {
			// Tentacle answers the DELETE and keeps the instance (FACTS.md §19).
			require.NoError(t, err, "%s keeps a deleted bucket instance", lab.Release())
			continue
		}
		require.ErrorIs(t, err, ErrNotFound, "%s %s", d.section, d.key)
		err = b.DeleteMetadata(ctx, d.section, d.key)
		require.ErrorIs(t, err, ErrNotFound, "%s %s", d.section, d.key)
		var ge *GatewayError
		require.ErrorAs(t, err, &ge)
		assert.Equal(t, 404, ge.Status)
		assert.Equal(t, "NoSuchKey", ge.Code)
		assert.NotEmpty(t, ge.RequestID)
		assert.Contains(t, err.Error(), ge.RequestID)
	}
	// Still there on zone-a.
	_, err = a.GetMetadata(ctx, "user", uid)
	require.NoError(t, err)
}

func jsonField(t *testing.T, blob []byte, field string) string {
	t.Helper()
	var m map[string]json.RawMessage
	require.NoError(t, json.Unmarshal(blob, &m))
	require.Contains(t, m, field)
	return string(m[field])
}

func TestLabLocks(t *testing.T) {
	t.Parallel()
	lab := labtest.Get(t)
	b := labClient(t, lab.ZoneB)
	ctx := testCtx(t)
	zoneB, name, err := b.ZoneID(ctx, lab.ZoneB)
	require.NoError(t, err)
	require.Equal(t, "zone-b", name)
	info, err := b.MDLogInfo(ctx)
	require.NoError(t, err)

	// Shards far past the 64 mdlog shards, so as not to meet other tests' leases.
	base := 100000 + int(time.Now().UnixNano()%800000)
	for i, period := range []string{"", info.Period} {
		shard := base + i
		l1, l2 := labtest.RandomName("locker-"), labtest.RandomName("locker-")
		require.NoError(t, b.LockMDLogShard(ctx, period, shard, 30*time.Second, zoneB, l1))
		err := b.LockMDLogShard(ctx, period, shard, 30*time.Second, zoneB, l2)
		require.ErrorIs(t, err, ErrLocked)
		var ge *GatewayError
		require.ErrorAs(t, err, &ge)
		assert.Equal(t, 423, ge.Status)
		assert.Equal(t, "Locked", ge.Code)
		require.NoError(t, b.LockMDLogShard(ctx, period, shard, 30*time.Second, zoneB, l1), "renew")
		require.ErrorIs(t, b.UnlockMDLogShard(ctx, period, shard, zoneB, l2), ErrNotFound)
		require.NoError(t, b.UnlockMDLogShard(ctx, period, shard, zoneB, l1))
		require.NoError(t, b.LockMDLogShard(ctx, period, shard, 30*time.Second, zoneB, l2))
		require.ErrorIs(t, b.LockMDLogShard(ctx, period, shard, 30*time.Second, zoneB, l1), ErrLocked)
		require.NoError(t, b.UnlockMDLogShard(ctx, period, shard, zoneB, l2))
	}

	// A lease runs out: a 1 s lock (sub-second lengths round up to 1 s)
	// can be taken by another locker once it has expired.
	shard := base + 2
	l1, l2 := labtest.RandomName("locker-"), labtest.RandomName("locker-")
	taken := time.Now()
	require.NoError(t, b.LockMDLogShard(ctx, "", shard, 300*time.Millisecond, zoneB, l1))
	require.ErrorIs(t, b.LockMDLogShard(ctx, "", shard, time.Second, zoneB, l2), ErrLocked)
	deadline := time.Now().Add(15 * time.Second)
	for {
		err := b.LockMDLogShard(ctx, "", shard, time.Second, zoneB, l2)
		if err == nil {
			break
		}
		require.ErrorIs(t, err, ErrLocked)
		require.True(t, time.Now().Before(deadline), "1 s lock never expired")
		select {
		case <-ctx.Done():
			t.Fatal(ctx.Err())
		case <-time.After(50 * time.Millisecond): // polling an expiry: nothing to wait on
		}
	}
	assert.GreaterOrEqual(t, time.Since(taken), 900*time.Millisecond, "expired before its length")
	require.NoError(t, b.UnlockMDLogShard(ctx, "", shard, zoneB, l2))
}

func TestLabAuth(t *testing.T) {
	t.Parallel()
	lab := labtest.Get(t)
	ctx := testCtx(t)
	_, ak, sk := labUser(t, "")
	cases := []struct {
		name     string
		ak, sk   string
		wantCode string
	}{
		{"wrong secret key", lab.AccessKey, lab.SecretKey + "x", "SignatureDoesNotMatch"},
		{"unknown access key", "NOSUCHKEY" + strings.ToUpper(labtest.RandomName("")), lab.SecretKey, "InvalidAccessKeyId"},
		{"not a system user", ak, sk, "AccessDenied"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			c := labClient(t, lab.ZoneA, tc.ak, tc.sk)
			_, err := c.ListMetadataSections(ctx)
			require.ErrorIs(t, err, ErrAuth)
			require.NotErrorIs(t, err, ErrNotFound)
			var ge *GatewayError
			require.ErrorAs(t, err, &ge)
			assert.Equal(t, 403, ge.Status)
			assert.Equal(t, tc.wantCode, ge.Code)
			assert.NotEmpty(t, ge.RequestID)
			assert.Equal(t, 1, ge.Attempts, "a 403 is not retried")
			assert.Contains(t, err.Error(), "secret key is wrong")
			assert.Contains(t, err.Error(), ge.RequestID)
		})
	}
}

func TestLabZoneID(t *testing.T) {
	t.Parallel()
	lab := labtest.Get(t)
	a, b := labClient(t, lab.ZoneA), labClient(t, lab.ZoneB)
	ctx := testCtx(t)
	wantB, wantA := zoneIDByAdmin(t, "zone-b"), zoneIDByAdmin(t, "zone-a")

	id, name, err := a.ZoneID(ctx, lab.ZoneB)
	require.NoError(t, err)
	assert.Equal(t, wantB, id)
	assert.Equal(t, "zone-b", name)
	id, name, err = b.ZoneID(ctx, strings.ToUpper(lab.ZoneA)+"/")
	require.NoError(t, err)
	assert.Equal(t, wantA, id)
	assert.Equal(t, "zone-a", name)
	_, _, err = a.ZoneID(ctx, "http://127.0.0.1:1")
	require.Error(t, err)
	assert.Contains(t, err.Error(), "zone-b="+lab.ZoneB)
}

func TestLabEndpointAndNotFound(t *testing.T) {
	t.Parallel()
	lab := labtest.Get(t)
	a := labClient(t, lab.ZoneA)
	assert.Equal(t, lab.ZoneA, a.Endpoint())
	ctx := testCtx(t)
	_, err := a.GetMetadata(ctx, "user", labtest.RandomName("nosuch-"))
	require.ErrorIs(t, err, ErrNotFound)
	_, err = a.GetMetadata(ctx, "bucket.instance", labtest.RandomName("nosuch-")+":abc.1")
	require.ErrorIs(t, err, ErrNotFound)
	require.ErrorIs(t, a.DeleteMetadata(ctx, "user", labtest.RandomName("nosuch-")), ErrNotFound)
	// The answer to a 2xx S3 call is XML, not JSON.
	resp := s3Do(t, a, http.MethodGet, "/", nil)
	assert.True(t, bytes.HasPrefix(resp.body, []byte("<?xml")))
}

// TestLabLatency guards the quick-ACK workaround: the lab's beast frontend
// runs without tcp_nodelay, and every answer with a body then waited ~40 ms
// for a delayed ACK.
func TestLabLatency(t *testing.T) {
	lab := labtest.Get(t)
	a := labClient(t, lab.ZoneA)
	ctx := testCtx(t)
	var ds []time.Duration
	for range 21 {
		start := time.Now()
		_, err := a.MDLogShardInfo(ctx, "", 1)
		require.NoError(t, err)
		ds = append(ds, time.Since(start))
	}
	slices.Sort(ds)
	t.Logf("GET /admin/log?type=metadata&id=1&info: min %v, median %v, max %v", ds[0], ds[len(ds)/2], ds[len(ds)-1])
	assert.Less(t, ds[len(ds)/2], 25*time.Millisecond)
}

// TestLabBucketVersions: the bucket stats count a bucket's objects, a
// tenant's bucket named "tenant/name" too (the admin API takes the tenant
// as its own parameter); a bucket that does not exist is ErrNotFound.
func TestLabBucketVersions(t *testing.T) {
	lab := labtest.Get(t)
	admin := labClient(t, lab.ZoneA)
	for _, tenant := range []string{"", labtest.RandomName("t")} {
		_, ak, sk := labUser(t, tenant)
		key, _ := labBucket(t, labClient(t, lab.ZoneA, ak, sk), admin, tenant, 3)
		n, err := admin.BucketVersions(testCtx(t), key)
		if err != nil {
			t.Fatal(err)
		}
		if n != 3 {
			t.Fatalf("bucket %s: %d versions counted, want 3", key, n)
		}
	}
	if _, err := admin.BucketVersions(testCtx(t), labtest.RandomName("nope")); !errors.Is(err, ErrNotFound) {
		t.Fatalf("a bucket that does not exist: %v, want ErrNotFound", err)
	}
}
