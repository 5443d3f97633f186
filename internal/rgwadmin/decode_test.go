package rgwadmin

import (
	"context"
	"strconv"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// Decoding of every answer type, replaying the lab's recorded answers.
// strict: the client must send exactly the recorded request.

func ts(t *testing.T, s any) time.Time {
	t.Helper()
	v, err := time.Parse(time.RFC3339Nano, s.(string))
	require.NoError(t, err)
	return v
}

func atoi(t *testing.T, s string) int {
	t.Helper()
	n, err := strconv.Atoi(s)
	require.NoError(t, err)
	return n
}

func TestDecodeRecordedAnswers(t *testing.T) {
	ctx := context.Background()
	cases := []struct {
		name    string
		answers []string // served in order; the last is the one under test
		run     func(t *testing.T, c *Client)
	}{
		{"mdlog info", []string{"mdlog-info"}, func(t *testing.T, c *Client) {
			got, err := c.MDLogInfo(ctx)
			require.NoError(t, err)
			want := obj(recordedJSON(t, "mdlog-info"))
			assert.Equal(t, LogInfo{NumShards: 64, Period: want["period"].(string), RealmEpoch: int(want["realm_epoch"].(float64))}, got)
		}},
		{"mdlog shard info", []string{"mdlog-shard-info"}, func(t *testing.T, c *Client) {
			q := recordedQuery(t, "mdlog-shard-info")
			got, err := c.MDLogShardInfo(ctx, q["period"], atoi(t, q["id"]))
			require.NoError(t, err)
			want := obj(recordedJSON(t, "mdlog-shard-info"))
			assert.Equal(t, want["marker"], got.Marker)
			assert.Equal(t, ts(t, want["last_update"]), got.LastUpdate)
		}},
		{"mdlog shard info of an empty shard: last_update 0.000000", []string{"mdlog-shard-info-empty"}, func(t *testing.T, c *Client) {
			got, err := c.MDLogShardInfo(ctx, "", 0)
			require.NoError(t, err)
			assert.Equal(t, ShardInfo{}, got)
			assert.True(t, got.LastUpdate.IsZero())
		}},
		{"mdlog list, truncated page", []string{"mdlog-list-page"}, func(t *testing.T, c *Client) {
			q := recordedQuery(t, "mdlog-list-page")
			got, err := c.ListMDLog(ctx, q["period"], atoi(t, q["id"]), q["marker"], atoi(t, q["max-entries"]))
			require.NoError(t, err)
			checkMDLogPage(t, "mdlog-list-page", got)
			assert.True(t, got.Truncated)
			assert.Len(t, got.Entries, 1)
		}},
		{"mdlog list, last page", []string{"mdlog-list-last"}, func(t *testing.T, c *Client) {
			q := recordedQuery(t, "mdlog-list-last")
			got, err := c.ListMDLog(ctx, q["period"], atoi(t, q["id"]), q["marker"], atoi(t, q["max-entries"]))
			require.NoError(t, err)
			checkMDLogPage(t, "mdlog-list-last", got)
			assert.False(t, got.Truncated)
		}},
		{"datalog info", []string{"datalog-info"}, func(t *testing.T, c *Client) {
			got, err := c.DataLogInfo(ctx)
			require.NoError(t, err)
			assert.Equal(t, LogInfo{NumShards: 128}, got)
		}},
		{"datalog shard info", []string{"datalog-info", "datalog-shard-info"}, func(t *testing.T, c *Client) {
			got, err := c.DataLogShardInfo(ctx, atoi(t, recordedQuery(t, "datalog-shard-info")["id"]))
			require.NoError(t, err)
			want := obj(recordedJSON(t, "datalog-shard-info"))
			assert.Equal(t, want["marker"], got.Marker)
			assert.Equal(t, ts(t, want["last_update"]), got.LastUpdate)
		}},
		{"datalog list with extra-info", []string{"datalog-info", "datalog-list"}, func(t *testing.T, c *Client) {
			q := recordedQuery(t, "datalog-list")
			got, err := c.ListDataLog(ctx, atoi(t, q["id"]), q["marker"], atoi(t, q["max-entries"]))
			require.NoError(t, err)
			want := obj(recordedJSON(t, "datalog-list"))
			assert.Equal(t, want["marker"], got.Marker)
			assert.Equal(t, want["truncated"], got.Truncated)
			wes := want["entries"].([]any)
			require.Len(t, got.Entries, len(wes))
			require.NotEmpty(t, wes)
			for i, we := range wes {
				w := obj(we)
				in := obj(w["entry"])
				assert.Equal(t, DataLogEntry{EntityType: in["entity_type"].(string), Key: in["key"].(string),
					Timestamp: ts(t, in["timestamp"]), LogID: w["log_id"].(string)}, got.Entries[i])
			}
			assert.Equal(t, got.Marker, got.Entries[len(got.Entries)-1].LogID)
		}},
		{"bilog info, whole bucket", []string{"bilog-info-bucket"}, func(t *testing.T, c *Client) {
			got, err := c.BILogInfo(ctx, recordedQuery(t, "bilog-info-bucket")["bucket-instance"])
			require.NoError(t, err)
			want := obj(recordedJSON(t, "bilog-info-bucket"))
			assert.Equal(t, BILogInfo{BucketVer: want["bucket_ver"].(string), MasterVer: want["master_ver"].(string),
				MaxMarker: want["max_marker"].(string), SyncStopped: false}, got)
			assert.Equal(t, "false", want["syncstopped"], "the gateway writes the flag as a string")
		}},
		{"bilog info, one shard", []string{"bilog-info-shard"}, func(t *testing.T, c *Client) {
			got, err := c.BILogInfo(ctx, recordedQuery(t, "bilog-info-shard")["bucket-instance"])
			require.NoError(t, err)
			want := obj(recordedJSON(t, "bilog-info-shard"))
			assert.Equal(t, want["max_marker"], got.MaxMarker)
			assert.NotContains(t, got.MaxMarker, "#")
			assert.False(t, got.HasGenerations, "Pacific names no index log generations")
		}},
		{"bilog info after a reshard, Tentacle", []string{"tentacle-bilog-info-resharded"}, func(t *testing.T, c *Client) {
			got, err := c.BILogInfo(ctx, recordedQuery(t, "tentacle-bilog-info-resharded")["bucket-instance"])
			require.NoError(t, err)
			assert.Equal(t, uint64(1), got.LatestGen)
			assert.True(t, got.HasGenerations)
			assert.Equal(t, []BILogGeneration{{Gen: 0, NumShards: 11}, {Gen: 1, NumShards: 3}}, got.Generations)
			assert.Equal(t, "00000000002.7.6", got.MaxMarker, "the current generation's, though generation 0 was asked")
		}},
		{"bilog list of generation 0 after a reshard, Tentacle", []string{"tentacle-bilog-list-gen0"}, func(t *testing.T, c *Client) {
			q := recordedQuery(t, "tentacle-bilog-list-gen0")
			require.Equal(t, "0", q["generation"])
			got, err := c.ListBILog(ctx, q["bucket-instance"], "", 0)
			require.NoError(t, err)
			require.Len(t, got, 1)
			assert.Equal(t, "k3", got[0].Object)
		}},
		{"bilog list", []string{"bilog-list"}, func(t *testing.T, c *Client) {
			q := recordedQuery(t, "bilog-list")
			got, err := c.ListBILog(ctx, q["bucket-instance"], q["marker"], atoi(t, q["max-entries"]))
			require.NoError(t, err)
			wes := recordedJSON(t, "bilog-list").([]any)
			require.Len(t, got, len(wes))
			require.NotEmpty(t, wes)
			for i, we := range wes {
				w := obj(we)
				e := got[i]
				assert.Equal(t, w["op_id"], e.OpID)
				assert.Equal(t, w["op_tag"], e.OpTag)
				assert.Equal(t, w["op"], e.Op)
				assert.Equal(t, w["object"], e.Object)
				assert.Equal(t, w["instance"], e.Instance)
				assert.Equal(t, w["state"], e.State)
				assert.Equal(t, uint64(w["index_ver"].(float64)), e.IndexVer)
				assert.Equal(t, ts(t, w["timestamp"]), e.Timestamp)
				ver := obj(w["ver"])
				assert.Equal(t, int64(ver["pool"].(float64)), e.Ver.Pool)
				assert.Equal(t, uint64(ver["epoch"].(float64)), e.Ver.Epoch)
				assert.Equal(t, int(w["bilog_flags"].(float64)), e.BILogFlags)
				assert.Equal(t, w["versioned"], e.Versioned)
				assert.Equal(t, w["owner"], e.Owner)
				assert.Equal(t, w["owner_display_name"], e.OwnerDisplayName)
				var trace []string
				for _, z := range w["zones_trace"].([]any) {
					trace = append(trace, obj(z)["entry"].(string))
				}
				require.NotEmpty(t, trace)
				assert.Equal(t, trace, e.ZonesTrace)
			}
		}},
		{"metadata sections", []string{"metadata-sections"}, func(t *testing.T, c *Client) {
			got, err := c.ListMetadataSections(ctx)
			require.NoError(t, err)
			assert.Subset(t, got, []string{"bucket", "bucket.instance", "user"})
		}},
		{"metadata keys, truncated \"true\" as a string", []string{"metadata-keys-page"}, func(t *testing.T, c *Client) {
			q := recordedQuery(t, "metadata-keys-page")
			got, err := c.ListMetadataKeys(ctx, "user", q["marker"], atoi(t, q["max-entries"]))
			require.NoError(t, err)
			want := obj(recordedJSON(t, "metadata-keys-page"))
			assert.Equal(t, "true", want["truncated"])
			assert.True(t, got.Truncated)
			assert.Equal(t, 1, got.Count)
			assert.Len(t, got.Keys, 1)
			assert.Equal(t, want["marker"], got.Marker)
		}},
		{"metadata keys, last page", []string{"metadata-keys-last"}, func(t *testing.T, c *Client) {
			got, err := c.ListMetadataKeys(ctx, "user", "", atoi(t, recordedQuery(t, "metadata-keys-last")["max-entries"]))
			require.NoError(t, err)
			assert.False(t, got.Truncated)
			assert.Equal(t, len(got.Keys), got.Count)
			assert.Contains(t, got.Keys, "sync-system")
		}},
		{"get metadata: tenant user, '$' in the key", []string{"metadata-get-user"}, func(t *testing.T, c *Client) {
			key := recordedQuery(t, "metadata-get-user")["key"]
			assert.Contains(t, key, "$")
			got, err := c.GetMetadata(ctx, "user", key)
			require.NoError(t, err)
			assert.Equal(t, loadExchange(t, "metadata-get-user").Body, string(got), "the blob is passed on untouched")
		}},
		{"get metadata: tenant bucket instance, '/' and ':' in the key", []string{"metadata-get-bucket-instance"}, func(t *testing.T, c *Client) {
			key := recordedQuery(t, "metadata-get-bucket-instance")["key"]
			assert.Contains(t, key, "/")
			assert.Contains(t, key, ":")
			got, err := c.GetMetadata(ctx, "bucket.instance", key)
			require.NoError(t, err)
			assert.JSONEq(t, loadExchange(t, "metadata-get-bucket-instance").Body, string(got))
		}},
		{"put metadata: applied", []string{"metadata-put-applied"}, func(t *testing.T, c *Client) {
			x := loadExchange(t, "metadata-put-applied")
			got, err := c.PutMetadata(ctx, "user", recordedQuery(t, "metadata-put-applied")["key"], []byte(x.Request.Body), "")
			require.NoError(t, err)
			assert.Equal(t, UpdateStatus{Applied: true, Status: "applied", Version: x.Header.Get("Rgwx_update_version")}, got)
		}},
		{"put metadata: skipped", []string{"metadata-put-skipped"}, func(t *testing.T, c *Client) {
			x := loadExchange(t, "metadata-put-skipped")
			q := recordedQuery(t, "metadata-put-skipped")
			got, err := c.PutMetadata(ctx, "user", q["key"], []byte(x.Request.Body), q["update-type"])
			require.NoError(t, err)
			assert.Equal(t, "update-by-version", q["update-type"])
			assert.Equal(t, UpdateStatus{Applied: false, Status: "skipped", Version: "ver:0,tag:"}, got)
		}},
		{"put metadata: bucket entry point, 200 without status header", []string{"metadata-put-bucket"}, func(t *testing.T, c *Client) {
			x := loadExchange(t, "metadata-put-bucket")
			got, err := c.PutMetadata(ctx, "bucket", recordedQuery(t, "metadata-put-bucket")["key"], []byte(x.Request.Body), "")
			require.NoError(t, err)
			assert.Equal(t, UpdateStatus{Applied: true, Status: "", Version: x.Header.Get("Rgwx_update_version")}, got)
			assert.NotEmpty(t, got.Version)
		}},
		{"delete metadata", []string{"metadata-delete"}, func(t *testing.T, c *Client) {
			require.NoError(t, c.DeleteMetadata(ctx, "user", recordedQuery(t, "metadata-delete")["key"]))
		}},
		{"lock", []string{"lock-ok"}, func(t *testing.T, c *Client) {
			q := recordedQuery(t, "lock-ok")
			require.NoError(t, c.LockMDLogShard(ctx, "", atoi(t, q["id"]), time.Duration(atoi(t, q["length"]))*time.Second, q["zone-id"], q["locker-id"]))
		}},
		{"unlock", []string{"unlock-ok"}, func(t *testing.T, c *Client) {
			q := recordedQuery(t, "unlock-ok")
			require.NoError(t, c.UnlockMDLogShard(ctx, "", atoi(t, q["id"]), q["zone-id"], q["locker-id"]))
		}},
		{"trim mdlog, then the check listing", []string{"trim-mdlog-ok", "trim-mdlog-check"}, func(t *testing.T, c *Client) {
			q := recordedQuery(t, "trim-mdlog-ok")
			require.NoError(t, c.TrimMDLog(ctx, q["period"], atoi(t, q["id"]), q["marker"]))
		}},
		{"trim datalog", []string{"datalog-info", "trim-datalog-ok"}, func(t *testing.T, c *Client) {
			q := recordedQuery(t, "trim-datalog-ok")
			require.NoError(t, c.TrimDataLog(ctx, atoi(t, q["id"]), q["marker"]))
		}},
		{"trim bilog with an op_id ('#' in the marker)", []string{"trim-bilog-ok"}, func(t *testing.T, c *Client) {
			q := recordedQuery(t, "trim-bilog-ok")
			assert.Contains(t, q["end-marker"], "#")
			require.NoError(t, c.TrimBILog(ctx, q["bucket-instance"], q["end-marker"]))
		}},
		{"zone id from the period", []string{"realm-period", "realm-period"}, func(t *testing.T, c *Client) {
			zg := obj(obj(recordedJSON(t, "realm-period"))["period_map"])["zonegroups"].([]any)[0]
			for _, z := range obj(zg)["zones"].([]any) {
				z := obj(z)
				ep := z["endpoints"].([]any)[0].(string)
				id, name, err := c.ZoneID(ctx, ep+"/")
				require.NoError(t, err)
				assert.Equal(t, z["id"], id)
				assert.Equal(t, z["name"], name)
			}
		}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			r := newReplay(t, true, tc.answers...)
			tc.run(t, r.client(t))
			assert.Equal(t, int32(len(tc.answers)), r.hits.Load(), "requests sent")
		})
	}
}

func checkMDLogPage(t *testing.T, name string, got MDLogPage) {
	t.Helper()
	want := obj(recordedJSON(t, name))
	assert.Equal(t, want["marker"], got.Marker)
	assert.Equal(t, want["truncated"], got.Truncated)
	wes := want["entries"].([]any)
	require.Len(t, got.Entries, len(wes))
	require.NotEmpty(t, wes)
	for i, we := range wes {
		w := obj(we)
		d := obj(w["data"])
		rv, wv := obj(d["read_version"]), obj(d["write_version"])
		assert.Equal(t, MDLogEntry{
			ID: w["id"].(string), Section: w["section"].(string), Name: w["name"].(string),
			Timestamp:    ts(t, w["timestamp"]),
			ReadVersion:  ObjVersion{Tag: rv["tag"].(string), Ver: uint64(rv["ver"].(float64))},
			WriteVersion: ObjVersion{Tag: wv["tag"].(string), Ver: uint64(wv["ver"].(float64))},
			Status:       obj(d["status"])["status"].(string),
		}, got.Entries[i])
	}
}

// A bucket shard key names its index log generation after "@" (rgwlog);
// the admin API takes it as generation=, always sent (FACTS.md section 32).
func TestBILogQueryGeneration(t *testing.T) {
	q := bilogQuery("rs1:eaaf.4186.1:2@3")
	assert.Equal(t, "rs1:eaaf.4186.1:2", q.Get("bucket-instance"))
	assert.Equal(t, "3", q.Get("generation"))
	q = bilogQuery("acme/logs:5a75.4176.4:0")
	assert.Equal(t, "acme/logs:5a75.4176.4:0", q.Get("bucket-instance"))
	assert.Equal(t, "0", q.Get("generation"))
}
