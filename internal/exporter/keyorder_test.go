package exporter

import (
	"fmt"
	"math/rand/v2"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"google.golang.org/protobuf/types/known/timestamppb"

	v1 "github.com/rgwsync/rgwsync/gen/rgwsync/v1"
	"github.com/rgwsync/rgwsync/internal/checkpoint"
	"github.com/rgwsync/rgwsync/internal/rgwlog"
)

// The rules one by one: what is held, and which retries go when.
func TestKeyOrderRules(t *testing.T) {
	const bs = "b:inst:0"
	now := time.Now()
	past, later := now.Add(-time.Second), now.Add(time.Hour)
	retries := []checkpoint.Retry{
		{Name: "k", VersionID: "V1", Epoch: 4, Error: rgwlog.HeldPrefix + "x", NextAttempt: later}, // held: goes with V2
		{Name: "k", VersionID: "V2", Epoch: 3, Error: "503", NextAttempt: past},
		{Name: "slow", VersionID: "S2", Epoch: 5, Error: rgwlog.HeldPrefix + "x", NextAttempt: past},
		{Name: "slow", VersionID: "S1", Epoch: 4, Error: "503", NextAttempt: later}, // backing off: S2 waits
		{Name: "gone", VersionID: "G1", Epoch: 9, Error: recheckMark, NextAttempt: later},
		{Name: "parked", VersionID: "null", Epoch: 4, Error: rgwlog.ParkedPrefix + "x", NextAttempt: later}, // not due: waits alone
		{Name: "parkdue", VersionID: "null", Epoch: 4, Error: rgwlog.ParkedPrefix + "x", NextAttempt: past}, // due: goes
		{Name: "parkdue", VersionID: "P5", Epoch: 5, Error: rgwlog.HeldPrefix + "x", NextAttempt: later},    // goes with nothing to wait for
		{Name: "done", VersionID: "D1", Epoch: 2, Error: recheckMark, NextAttempt: past},
		{Name: "flying", VersionID: "F1", Epoch: 2, Error: "503", NextAttempt: past},
		{Name: "plain", Error: "503", NextAttempt: past},
		{Name: "plain-flying", Error: "503", NextAttempt: past},
	}
	var o keyOrder
	o.sent(1, bs, []*v1.ObjectOp{{Key: "flying", VersionId: "F2"}, {Key: "busy", VersionId: "B1"}, {Key: "plain-flying"}}, nil, nil)
	// A batch whose only item of "heldonly" is a held one keeps the key
	// busy until its ack makes the item a retry (issue #11, hole 3).
	o.sent(2, bs, nil, []*v1.RetryItem{{Key: "heldonly", VersionId: "H2", Error: rgwlog.HeldPrefix + "x"}}, nil)
	o.sent(3, "other:inst:0", []*v1.ObjectOp{{Key: "k", VersionId: "X"}}, nil, nil) // another bucket shard

	var got []string
	for _, r := range o.ready(bs, retries, now) {
		got = append(got, r.Name+"/"+r.VersionID)
	}
	require.Equal(t, []string{"done/D1", "k/V2", "k/V1", "parkdue/null", "parkdue/P5", "plain/"}, got)

	refs := o.hold(bs, []objRef{
		{key: "k", version: "V3"},        // k has retries kept
		{key: "busy", version: "B2"},     // an op in a batch not acked
		{key: "heldonly", version: "H3"}, // only a held item in a batch not acked
		{key: "gone", version: "G2"},     // only a re-check: not held
		{key: "parked", version: "V5"},   // only a parked op: not held (it lands below by its epoch)
		{key: "fresh", version: "N1"},    // nothing before it
		{key: "busy"},                    // unversioned: reconciled, never held
	}, retries)
	var held []string
	for _, r := range refs {
		if r.held != "" {
			held = append(held, r.key+"/"+r.version)
		}
	}
	require.Equal(t, []string{"k/V3", "busy/B2", "heldonly/H3"}, held)

	o.acked(2)
	require.False(t, o.busy(bs, "heldonly", nil), "acked: the held item is a retry now, which the caller passes")
	require.True(t, o.busy(bs, "heldonly", []checkpoint.Retry{{Name: "heldonly", VersionID: "H2", Error: rgwlog.HeldPrefix + "x"}}))

	// In one batch, the ops of a key after one the source failed are held.
	in := []objRef{{key: "a", version: "1"}, {key: "a", version: "2"}, {key: "b", version: "1"}, {key: "a", version: "3"}, {key: "c"}, {key: "c"}}
	holdBehindFailures(in, []bool{true, false, false, false, true, false})
	require.Equal(t, []string{"", "an earlier op of this key could not be read from the source", "",
		"an earlier op of this key could not be read from the source", "", ""},
		[]string{in[0].held, in[1].held, in[2].held, in[3].held, in[4].held, in[5].held})
}

// Random interleavings of reads, holds, source failures, destination
// failures, acks, retries and reconnects, played against a model of the
// destination that stores a version written below its key's epoch (as the
// gateway does: not made current). Every run must apply each key's ops in
// the source's order and end with zone-b equal to the source.
func TestKeyOrderRandomInterleavings(t *testing.T) {
	runs := 3000
	if testing.Short() {
		runs = 300
	}
	for seed := range runs {
		if msg := simulateKeyOrder(uint64(seed)); msg != "" {
			t.Fatalf("seed %d: %s", seed, msg)
		}
	}
}

// simEntry is one bilog op of the simulated source.
type simEntry struct {
	key, version string
	epoch        uint64
	del          bool // a version removal (unlink_instance), else a link_olh
}

type simOp struct {
	key, version string
	epoch        uint64
	del          bool
}

type simBatch struct {
	seq     uint64
	ops     []simOp
	failed  []*v1.RetryItem // held or failed at the source
	resent  []checkpoint.Retry
	through int // the bound after the ack (-1: a retry batch)
}

// simulateKeyOrder plays one random run; "" when it kept the order and
// converged.
func simulateKeyOrder(seed uint64) string {
	const bs = "b:inst:0"
	rng := rand.New(rand.NewPCG(seed, seed*7+1))
	keys := []string{"k0", "k1", "k2"}

	// The source: a log of link_olh and unlink_instance entries, epochs in
	// log order per key, and its final state (the live versions).
	var log []simEntry
	live := map[string]map[string]uint64{} // key -> version -> epoch
	epoch := map[string]uint64{}
	for i := range 12 + rng.IntN(20) {
		k := keys[rng.IntN(len(keys))]
		if live[k] == nil {
			live[k] = map[string]uint64{}
		}
		epoch[k]++
		if len(live[k]) > 0 && rng.IntN(3) == 0 {
			for v := range live[k] { // any live version
				delete(live[k], v)
				log = append(log, simEntry{key: k, version: v, epoch: epoch[k], del: true})
				break
			}
			continue
		}
		v := fmt.Sprintf("v%d", i)
		live[k][v] = epoch[k]
		log = append(log, simEntry{key: k, version: v, epoch: epoch[k]})
	}

	// zone-b: versions per key and the key's epoch.
	dest := map[string]map[string]bool{}
	olh := map[string]uint64{}
	apply := func(op simOp) string {
		if dest[op.key] == nil {
			dest[op.key] = map[string]bool{}
		}
		has := dest[op.key][op.version]
		if (op.del && !has) || (!op.del && has) {
			return "" // nothing to do (a replay, or a version gone already)
		}
		if op.epoch < olh[op.key] {
			return fmt.Sprintf("%s/%s (epoch %d, del %v) applied below the key's epoch %d on zone-b", op.key, op.version, op.epoch, op.del, olh[op.key])
		}
		olh[op.key] = op.epoch
		if op.del {
			delete(dest[op.key], op.version)
		} else {
			dest[op.key][op.version] = true
		}
		return ""
	}

	// The exporter's side: the bound, the read position, retries kept in
	// the bound, batches in flight; the applier applies a batch's ops in
	// order and fails some.
	var (
		order            keyOrder
		bound, readPos   int
		retries          []checkpoint.Retry
		inflight         []*simBatch
		seq              uint64
		clock            = time.Unix(1_800_000_000, 0)
		pSrcFail, pDstFl = rng.Float64() * 0.4, rng.Float64() * 0.4
	)
	const window = 3
	build := func(refs []objRef) ([]simOp, []*v1.RetryItem) {
		fail := make([]bool, len(refs))
		for i, r := range refs {
			fail[i] = r.held == "" && rng.Float64() < pSrcFail
		}
		holdBehindFailures(refs, fail)
		var ops []simOp
		var failed []*v1.RetryItem
		for i, r := range refs {
			item := &v1.RetryItem{Key: r.key, VersionId: r.version, Timestamp: timestamppb.New(clock)}
			switch {
			case r.held != "":
				item.Error = rgwlog.HeldPrefix + r.held
				failed = append(failed, item)
			case fail[i]:
				item.Error = "source: 503"
				failed = append(failed, item)
			case r.kind == v1.ObjectOpKind_OBJECT_OP_KIND_UNSPECIFIED:
				// A retry: what the source's index says now (FindVersion).
				if e, ok := live[r.key][r.version]; ok {
					ops = append(ops, simOp{key: r.key, version: r.version, epoch: e})
				} else {
					ops = append(ops, simOp{key: r.key, version: r.version, epoch: r.epoch, del: true})
				}
			case r.kind == v1.ObjectOpKind_OBJECT_OP_KIND_DELETE_VERSION:
				ops = append(ops, simOp{key: r.key, version: r.version, epoch: r.epoch, del: true})
			default:
				if _, ok := live[r.key][r.version]; ok {
					ops = append(ops, simOp{key: r.key, version: r.version, epoch: r.epoch})
				} // else gone already at the source: a later entry removes it
			}
		}
		return ops, failed
	}
	send := func(ops []simOp, failed []*v1.RetryItem, resent []checkpoint.Retry, through int) {
		seq++
		var pops []*v1.ObjectOp
		for _, op := range ops {
			pops = append(pops, &v1.ObjectOp{Key: op.key, VersionId: op.version})
		}
		order.sent(seq, bs, pops, failed, resent)
		inflight = append(inflight, &simBatch{seq: seq, ops: ops, failed: failed, resent: resent, through: through})
	}
	readPage := func(allowFail bool) {
		n := min(1+rng.IntN(4), len(log)-readPos)
		var refs []objRef
		for _, en := range log[readPos : readPos+n] {
			r := objRef{key: en.key, version: en.version, epoch: en.epoch, kind: v1.ObjectOpKind_OBJECT_OP_KIND_PUT}
			if en.del {
				r.kind = v1.ObjectOpKind_OBJECT_OP_KIND_DELETE_VERSION
			}
			refs = append(refs, r)
		}
		refs = order.hold(bs, refs, retries)
		if !allowFail {
			pSrcFail = 0
		}
		ops, failed := build(refs)
		readPos += n
		send(ops, failed, nil, readPos)
	}
	sendRetries := func() bool {
		ready := order.ready(bs, retries, clock)
		if len(ready) == 0 {
			return false
		}
		var refs []objRef
		for _, r := range ready {
			refs = append(refs, objRef{key: r.Name, version: r.VersionID, epoch: r.Epoch})
		}
		ops, failed := build(refs)
		send(ops, failed, ready, -1)
		return true
	}
	keep := func(failed []*v1.RetryItem, epochs map[string]uint64) {
		for _, f := range failed {
			id := f.GetKey() + "\x00" + f.GetVersionId()
			found := false
			for i := range retries {
				if retries[i].Name == f.GetKey() && retries[i].VersionID == f.GetVersionId() {
					retries[i].Error, found = f.GetError(), true
					retries[i].NextAttempt = clock.Add(time.Duration(rng.IntN(3)) * time.Second)
					if e := epochs[id]; e > 0 {
						retries[i].Epoch = e
					}
				}
			}
			if !found {
				retries = append(retries, checkpoint.Retry{Name: f.GetKey(), VersionID: f.GetVersionId(), Epoch: epochs[id],
					Error: f.GetError(), NextAttempt: clock.Add(time.Duration(rng.IntN(3)) * time.Second)})
			}
		}
	}
	// applyOldest plays the applier on the oldest batch in flight; with
	// ack false it dies before the ack (the batch is read again later).
	applyOldest := func(dstFail float64, ack bool) string {
		b := inflight[0]
		failed := append([]*v1.RetryItem(nil), b.failed...)
		heldKeys := map[string]bool{}
		for _, op := range b.ops {
			if heldKeys[op.key] || rng.Float64() < dstFail {
				heldKeys[op.key] = true // the applier holds a key's later ops behind a failure
				failed = append(failed, &v1.RetryItem{Key: op.key, VersionId: op.version, Error: "destination: 503"})
				continue
			}
			if msg := apply(op); msg != "" {
				return msg
			}
		}
		if !ack {
			return ""
		}
		epochs := map[string]uint64{}
		for _, op := range b.ops {
			epochs[op.key+"\x00"+op.version] = op.epoch
		}
		for _, r := range b.resent {
			if _, ok := epochs[r.Name+"\x00"+r.VersionID]; !ok {
				epochs[r.Name+"\x00"+r.VersionID] = r.Epoch
			}
		}
		for _, en := range log {
			if _, ok := epochs[en.key+"\x00"+en.version]; !ok {
				epochs[en.key+"\x00"+en.version] = en.epoch
			}
		}
		if b.through < 0 {
			failedNow := map[string]bool{}
			for _, f := range failed {
				failedNow[f.GetKey()+"\x00"+f.GetVersionId()] = true
			}
			sent := map[string]bool{}
			for _, r := range b.resent {
				sent[r.Name+"\x00"+r.VersionID] = true
			}
			var kept []checkpoint.Retry
			for _, r := range retries {
				id := r.Name + "\x00" + r.VersionID
				if sent[id] && !failedNow[id] {
					continue
				}
				kept = append(kept, r)
			}
			retries = kept
		} else {
			bound = b.through
		}
		keep(failed, epochs)
		inflight = inflight[1:]
		order.acked(b.seq)
		return ""
	}

	for step := 0; step < 400; step++ {
		clock = clock.Add(time.Duration(rng.IntN(1500)) * time.Millisecond)
		switch x := rng.IntN(10); {
		case x < 4 && len(inflight) < window && readPos < len(log):
			readPage(true)
		case x < 6 && len(inflight) < window:
			sendRetries()
		case x < 9 && len(inflight) > 0:
			if msg := applyOldest(pDstFl, true); msg != "" {
				return msg
			}
		case x == 9 && rng.IntN(4) == 0:
			// Reconnect: the oldest batch may have been applied without
			// its ack; everything unacked is read again from the bound.
			if len(inflight) > 0 && rng.IntN(2) == 0 {
				if msg := applyOldest(pDstFl, false); msg != "" {
					return msg
				}
			}
			inflight, order, readPos = nil, keyOrder{}, bound
		}
	}
	// Drain without faults: everything goes through.
	pSrcFail = 0
	for range 10000 {
		clock = clock.Add(5 * time.Second)
		switch {
		case len(inflight) > 0:
			if msg := applyOldest(0, true); msg != "" {
				return msg
			}
		case readPos < len(log):
			readPage(false)
		case !sendRetries():
			if len(retries) > 0 {
				return fmt.Sprintf("retries never sent: %+v", retries)
			}
			for k, vs := range live {
				for v := range vs {
					if !dest[k][v] {
						return fmt.Sprintf("%s/%s lost on zone-b", k, v)
					}
				}
				for v := range dest[k] {
					if _, ok := vs[v]; !ok {
						return fmt.Sprintf("%s/%s on zone-b, removed at the source", k, v)
					}
				}
			}
			return ""
		}
	}
	return "did not converge"
}
