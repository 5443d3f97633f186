package checkpoint

import (
	"errors"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	bolt "go.etcd.io/bbolt"

	"github.com/rgwsync/rgwsync/internal/rgwlog"
)

func TestPutGetListRoundTrip(t *testing.T) {
	path := filepath.Join(t.TempDir(), "bounds.db")
	s, err := Open(path)
	require.NoError(t, err)
	ts := time.Date(2026, 11, 25, 12, 25, 32, 671183000, time.UTC)
	entries := []Entry{
		{Key{"zone-b", LogMetadata, 10, ""}, Bound{Marker: "1_1795609532.671183_40.1", OldestTime: ts, Phase: "incremental"}},
		{Key{"zone-b", LogMetadata, 2, ""}, Bound{Marker: "1_1795609530.377534_5.1", Retries: []Retry{{Section: "user", Name: "tenant$bob", Attempts: 2, Error: "500", Timestamp: ts}}}},
		{Key{"zone-c", LogMetadata, 0, ""}, Bound{Marker: "x"}},
		{Key{"zone-b", LogBucketIndex, 3, "photos:5a75.4176.1"}, Bound{Marker: "00000000002.6.6"}},
	}
	require.NoError(t, s.Put(entries...))

	got, ok, err := s.Get(entries[1].Key)
	require.NoError(t, err)
	require.True(t, ok)
	require.Equal(t, entries[1].Bound.Marker, got.Marker)
	require.Equal(t, "tenant$bob", got.Retries[0].Name)

	_, ok, err = s.Get(Key{"zone-b", LogMetadata, 63, ""})
	require.NoError(t, err)
	require.False(t, ok)

	list, err := s.List("zone-b")
	require.NoError(t, err)
	require.Len(t, list, 3)
	// numeric shard order within a log, logs in name order
	require.Equal(t, LogBucketIndex, list[0].Key.Log)
	require.Equal(t, uint32(2), list[1].Key.Shard)
	require.Equal(t, uint32(10), list[2].Key.Shard)
	require.NoError(t, s.Close())

	// survives reopen
	s, err = Open(path)
	require.NoError(t, err)
	got, ok, err = s.Get(entries[0].Key)
	require.NoError(t, err)
	require.True(t, ok)
	require.True(t, got.OldestTime.Equal(ts))
	require.NoError(t, s.Delete(entries[0].Key))
	_, ok, _ = s.Get(entries[0].Key)
	require.False(t, ok)
	require.NoError(t, s.Close())
}

func TestCorruptValueIsReportedNotReset(t *testing.T) {
	path := filepath.Join(t.TempDir(), "bounds.db")
	s, err := Open(path)
	require.NoError(t, err)
	k := Key{"zone-b", LogMetadata, 7, ""}
	require.NoError(t, s.Put(Entry{k, Bound{Marker: "1_1795609532.671183_40.1"}}))
	require.NoError(t, s.Close())

	// flip one byte of the stored JSON behind the store's back
	db, err := bolt.Open(path, 0o600, nil)
	require.NoError(t, err)
	require.NoError(t, db.Update(func(tx *bolt.Tx) error {
		b := tx.Bucket(bucketBounds)
		v := append([]byte(nil), b.Get(encodeKey(k))...)
		v[len(v)-5] ^= 0x01
		return b.Put(encodeKey(k), v)
	}))
	require.NoError(t, db.Close())

	_, err = Open(path)
	require.Error(t, err)
	require.True(t, errors.Is(err, ErrCorrupt), "got %v", err)
	require.Contains(t, err.Error(), "zone-b/metadata/7")
}

func TestGarbageFileIsAnError(t *testing.T) {
	path := filepath.Join(t.TempDir(), "bounds.db")
	require.NoError(t, os.WriteFile(path, []byte("this is not a bbolt file at all, just some text"), 0o600))
	_, err := Open(path)
	require.Error(t, err)
	require.Contains(t, err.Error(), path)
}

func TestSecondOpenIsRefused(t *testing.T) {
	path := filepath.Join(t.TempDir(), "bounds.db")
	s, err := Open(path)
	require.NoError(t, err)
	defer s.Close()
	_, err = Open(path)
	require.ErrorContains(t, err, "locked by another process")
}

func TestKeyStringParse(t *testing.T) {
	for _, k := range []Key{
		{"zone-b", LogMetadata, 0, ""},
		{"zone-b", LogBucketIndex, 12, "b:inst.1:3"},
	} {
		got, err := ParseKey(k.String())
		require.NoError(t, err)
		require.Equal(t, k, got)
	}
	_, err := ParseKey("zone-b/metadata")
	require.Error(t, err)
	_, err = ParseKey("zone-b/metadata/x")
	require.Error(t, err)
}

// ListLog and ListLogShard read one log, or one shard of it, of one
// destination: no other destination, log or shard (shard 1 is not a prefix
// of shard 10, "data" not of "data.x"), every instance of the shard.
func TestListLogAndShard(t *testing.T) {
	s, err := Open(filepath.Join(t.TempDir(), "bounds.db"))
	require.NoError(t, err)
	defer s.Close()
	var entries []Entry
	for _, dest := range []string{"zone-b", "zone-bb"} {
		for _, shard := range []uint32{1, 10, 256} {
			for _, inst := range []string{"a:1:0", "b:2", "t/c:3:7"} {
				entries = append(entries, Entry{Key{dest, LogBucketIndex, shard, inst}, Bound{Marker: inst}})
			}
			entries = append(entries, Entry{Key{dest, LogData, shard, ""}, Bound{Marker: "d"}})
		}
		entries = append(entries, Entry{Key{dest, LogMetadata, 1, ""}, Bound{Marker: "m"}},
			Entry{Key{dest, LogMetadataFull, 0, ""}, Bound{Marker: "f"}})
	}
	require.NoError(t, s.Put(entries...))

	got, err := s.ListLogShard("zone-b", LogBucketIndex, 1)
	require.NoError(t, err)
	require.Len(t, got, 3)
	for i, inst := range []string{"a:1:0", "b:2", "t/c:3:7"} {
		require.Equal(t, Key{"zone-b", LogBucketIndex, 1, inst}, got[i].Key)
		require.Equal(t, inst, got[i].Bound.Marker)
	}
	got, err = s.ListLogShard("zone-b", LogBucketIndex, 2)
	require.NoError(t, err)
	require.Empty(t, got)

	got, err = s.ListLog("zone-b", LogData)
	require.NoError(t, err)
	require.Len(t, got, 3)
	for i, shard := range []uint32{1, 10, 256} {
		require.Equal(t, Key{"zone-b", LogData, shard, ""}, got[i].Key)
	}
	got, err = s.ListLog("zone-b", LogMetadata)
	require.NoError(t, err)
	require.Len(t, got, 1, "metadata, not metadata.full")
	all, err := s.List("zone-b")
	require.NoError(t, err)
	require.Len(t, all, 3*3+3+2)
}

func TestDeleteIf(t *testing.T) {
	s, err := Open(filepath.Join(t.TempDir(), "bounds.db"))
	require.NoError(t, err)
	defer s.Close()
	t1 := time.Date(2026, 12, 6, 4, 0, 0, 123456789, time.UTC)
	k := Key{"zone-b", LogInstanceCheck, 0, "b1"}
	require.NoError(t, s.Put(Entry{k, Bound{UpdatedAt: t1.Add(time.Nanosecond)}}))
	older := func(b Bound) bool { return !b.UpdatedAt.After(t1) }
	require.NoError(t, s.DeleteIf(k, older))
	_, ok, err := s.Get(k)
	require.NoError(t, err)
	require.True(t, ok, "a bound stored later is kept")
	require.NoError(t, s.Put(Entry{k, Bound{UpdatedAt: t1}}))
	require.NoError(t, s.DeleteIf(k, older))
	_, ok, err = s.Get(k)
	require.NoError(t, err)
	require.False(t, ok, "the bound it was asked about is removed (times kept to the nanosecond)")
	require.NoError(t, s.DeleteIf(k, older), "nothing to remove is no error")
}

// The store's names of the logs are rgwlog's: a bound written under one name
// is found under the other.
func TestUnitKeyNamesTheStoreLogs(t *testing.T) {
	for l, name := range map[rgwlog.Log]string{rgwlog.LogMetadata: LogMetadata, rgwlog.LogMetadataFull: LogMetadataFull,
		rgwlog.LogData: LogData, rgwlog.LogBucketIndex: LogBucketIndex} {
		require.Equal(t, Key{"zone-b", name, 3, ""}, UnitKey("zone-b", rgwlog.Unit{Log: l, Shard: 3}))
	}
}
