package applier

// The body of a chunked op, read as its chunks arrive from the exporter.

import (
	"context"
	"errors"
	"fmt"
	"io"
	"sync"

	v1 "github.com/rgwsync/rgwsync/gen/rgwsync/v1"
)

// asker answers the exporter's chunked ops when it sends bodies on request
// (BodyRequest): send asks for op index's body (skip false, granting chunks
// of room with chunk credit) or says it is not needed (skip true).
type asker struct {
	send func(index uint32, skip bool, chunks uint32)
	// grant is the room asked with a body (the worker's chunk queue), one
	// chunk more granted per chunk taken from it; 0 without chunk credit.
	grant uint32
}

// objectBody is a chunked op's body as the writes use it: a chunkReader, or
// a spooledBody (a body read to a file before a suspension write). A nil
// objectBody is an op whose body is inline.
type objectBody interface {
	io.Reader
	want()      // the body is needed: ask the exporter for it
	notWanted() // it is not: no chunk of it will come
	sourceFailed() bool
}

// chunkReader reads one chunked op's body from the batch's chunk channel.
// Chunks arrive in op-index order; a chunk with Offset -1 says the
// exporter could not read the source.
//
// The HTTP transport may go on reading a request body in its own goroutine
// after the request has returned (an early answer, a reset connection), so
// every read is serialised, and drain first detaches the transport: its
// later reads get an error instead of stealing chunks (a chaos run crashed
// an applier on this race).
type chunkReader struct {
	ctx   context.Context
	ch    <-chan *v1.ObjectChunk
	index uint32
	// ask, when the exporter sends bodies on request, asks for the body
	// (skip false) or says it is not needed (skip true); once per op.
	ask   *asker
	asked bool
	skip  bool

	mu       sync.Mutex
	buf      []byte
	off      int64
	done     bool
	failed   bool
	detached bool
}

var (
	errSourceBody = errors.New("the exporter could not read the object's body from the source")
	errDetached   = errors.New("body no longer available to this request")
)

func (r *chunkReader) Read(p []byte) (int, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.detached {
		return 0, errDetached
	}
	return r.read(p)
}

// want asks the exporter for the body (when it sends bodies on request).
func (r *chunkReader) want() {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.answer(false)
}

// notWanted tells the exporter the body is not needed: no chunk of it
// will come.
func (r *chunkReader) notWanted() {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.answer(true)
}

func (r *chunkReader) answer(skip bool) {
	if r.ask == nil || r.asked {
		return
	}
	r.asked, r.skip = true, skip
	var chunks uint32
	if !skip {
		chunks = r.ask.grant
	}
	r.ask.send(r.index, skip, chunks)
}

func (r *chunkReader) read(p []byte) (int, error) {
	r.answer(false) // a read before any answer asks for the body
	if r.skip {
		return 0, io.EOF
	}
	for len(r.buf) == 0 {
		if r.done {
			return 0, io.EOF
		}
		select {
		case <-r.ctx.Done():
			return 0, r.ctx.Err()
		case c, ok := <-r.ch:
			if !ok {
				return 0, errors.New("stream ended inside an object's body")
			}
			if c.GetIndex() != r.index {
				return 0, fmt.Errorf("protocol: chunk of op %d while reading op %d", c.GetIndex(), r.index)
			}
			if c.GetOffset() < 0 {
				r.done, r.failed = true, true
				return 0, errSourceBody
			}
			if c.GetOffset() != r.off {
				return 0, fmt.Errorf("protocol: chunk at offset %d, expected %d", c.GetOffset(), r.off)
			}
			r.buf = c.GetData()
			r.off += int64(len(r.buf))
			r.done = c.GetLast()
			if !r.done && r.ask != nil && r.ask.grant > 0 {
				r.ask.send(r.index, false, 1) // its place in the queue is free again
			}
		}
	}
	n := copy(p, r.buf)
	r.buf = r.buf[n:]
	return n, nil
}

// sourceFailed says the exporter reported that it could not read the body.
func (r *chunkReader) sourceFailed() bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.failed
}

// drain detaches the request (see chunkReader) and consumes the rest of
// the op's chunks (after a failure or a skip), so the next op's chunks
// line up.
func (r *chunkReader) drain() {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.detached = true
	r.answer(true) // never asked for (the op failed before): none will come
	buf := make([]byte, 32<<10)
	for {
		if _, err := r.read(buf); err != nil {
			return
		}
	}
}
