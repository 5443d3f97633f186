package exporter

import (
	"context"
	"fmt"
	"io"
	"sync"

	v1 "github.com/rgwsync/rgwsync/gen/rgwsync/v1"
	"github.com/rgwsync/rgwsync/internal/wire"
)

// Chunked bodies. With bodies on request the applier answers each chunked
// op of a batch with a BodyRequest (send it, or skip it); with chunk credit
// it also says how many chunks of the body it has room for, and grants one
// more for each chunk it takes. A body the destination stops reading (a
// hung write) then holds only its own shard's credit: the applier's one
// receive loop, which every shard of the stream shares, never waits for a
// full chunk queue (TestStuckBodyDoesNotHoldOtherShards).

// maxChunkGrant bounds the credit an applier can give one body (its queue
// is 8 chunks): a runaway peer cannot make the exporter read ahead.
const maxChunkGrant = 16

// bodyCredit is a subscription's credit for the body it streams now. The
// stream's receive loop grants (it never blocks on it); the data worker
// takes one per chunk it sends.
type bodyCredit struct {
	mu      sync.Mutex
	seq     uint64
	index   uint32
	n       int
	skipped bool          // the applier does not want the op's body
	wake    chan struct{} // closed and replaced at each grant
}

func newBodyCredit() *bodyCredit { return &bodyCredit{wake: make(chan struct{})} }

// grant records a BodyRequest's chunks; first says it is the first request
// for its op (the answer the data worker waits for), not a top-up. A new
// op's credit replaces what was left of the previous op's: the applier
// asks for an op's body only after it has read the previous one to its end.
// A top-up for an op that is not the current one (late) is dropped.
func (c *bodyCredit) grant(r *v1.BodyRequest) (first bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	switch {
	case r.GetSeq() > c.seq || (r.GetSeq() == c.seq && r.GetIndex() > c.index) || (c.seq == 0):
		c.seq, c.index, c.n, c.skipped, first = r.GetSeq(), r.GetIndex(), 0, r.GetSkip(), true
	case r.GetSeq() != c.seq || r.GetIndex() != c.index || c.skipped:
		return false
	}
	c.n = min(c.n+int(r.GetChunks()), maxChunkGrant)
	close(c.wake)
	c.wake = make(chan struct{})
	return first
}

// take waits for one chunk of credit for op index of batch seq.
func (c *bodyCredit) take(ctx context.Context, seq uint64, index uint32) error {
	for {
		c.mu.Lock()
		if c.seq == seq && c.index == index && c.n > 0 {
			c.n--
			c.mu.Unlock()
			return nil
		}
		wake := c.wake
		c.mu.Unlock()
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-wake:
		}
	}
}

// bodyWanted waits for the applier's answer to chunked op index of batch
// seq: skip means the destination has the object already.
func (dw *dataWorker) bodyWanted(ctx context.Context, seq uint64, index uint32) (skip bool, err error) {
	for {
		select {
		case <-ctx.Done():
			return false, ctx.Err()
		case r := <-dw.sub.bodies:
			if r.GetSeq() == seq && r.GetIndex() == index {
				return r.GetSkip(), nil
			}
			if r.GetSeq() > seq || (r.GetSeq() == seq && r.GetIndex() > index) {
				return false, fmt.Errorf("protocol: body request for op %d of batch %d while op %d of batch %d waits",
					r.GetIndex(), r.GetSeq(), index, seq)
			}
			// An earlier one (answered already): ignore.
		}
	}
}

// chunkRoom waits, with chunk credit, until the applier has room for one
// more chunk of op index of batch seq, and takes it; with an older applier
// gRPC flow control is all there is.
func (dw *dataWorker) chunkRoom(ctx context.Context, seq uint64, index uint32) error {
	if !dw.sub.st.chunkCredit {
		return nil
	}
	dw.stats.wait(fmt.Sprintf("the applier to take chunks of op %d of batch %d (the destination reads the body slowly, or not at all)", index, seq))
	if err := dw.sub.credit.take(ctx, seq, index); err != nil {
		return err
	}
	dw.stats.wait(waitAcks(len(dw.sent), "")) // the batch is in flight
	return nil
}

// sendChunk sends part of op index's body of batch seq (its room taken
// already, see chunkRoom); offset -1 with last says the source could not
// give the body.
func (dw *dataWorker) sendChunk(ctx context.Context, seq uint64, index uint32, offset int64, data []byte, last bool) error {
	if err := dw.sub.st.send(ctx, &v1.ReplicateResponse{Msg: &v1.ReplicateResponse_Chunk{Chunk: &v1.ObjectChunk{
		Shard: wire.Ref(dw.sub.unit), Generation: dw.sub.gen, Seq: seq, Index: index, Offset: offset, Data: data, Last: last}}}); err != nil {
		return err
	}
	dw.stats.progressed()
	return nil
}

// streamBody sends a chunked op's body from the source, chunk by chunk.
// A chunk is read from the source only once the applier has room for it
// (chunkRoom): a body the destination does not take is not read ahead.
func (dw *dataWorker) streamBody(ctx context.Context, seq uint64, op *v1.ObjectOp) error {
	index := op.GetIndex()
	// failed tells the applier the source could not give the body: an
	// empty last chunk at offset -1.
	failed := func() error { return dw.sendChunk(ctx, seq, index, -1, nil, true) }
	if err := dw.chunkRoom(ctx, seq, index); err != nil {
		return err
	}
	size := op.GetAttrs().GetSize()
	rc, err := dw.e.cfg.Objects.Get(ctx, op.GetBucket(), op.GetKey(), op.GetVersionId(), 0, size)
	if err != nil {
		return failed()
	}
	defer rc.Close()
	buf := make([]byte, dw.e.cfg.ChunkSize)
	var off int64
	for first := true; off < size; first = false {
		if !first {
			if err := dw.chunkRoom(ctx, seq, index); err != nil {
				return err
			}
		}
		n, rerr := io.ReadFull(rc, buf[:min(int64(len(buf)), size-off)])
		if n > 0 {
			data := append([]byte(nil), buf[:n]...)
			last := off+int64(n) >= size
			if err := dw.sendChunk(ctx, seq, index, off, data, last); err != nil {
				return err
			}
			off += int64(n)
			dw.e.cfg.Metrics.objectBytesRead.Add(float64(n))
		}
		if rerr != nil && off < size {
			// Source body shorter than stat said: abort this op's body.
			if n > 0 {
				if err := dw.chunkRoom(ctx, seq, index); err != nil {
					return err
				}
			}
			return failed()
		}
	}
	return nil
}
