package exporter

import (
	"context"
	"errors"
	"fmt"

	"golang.org/x/sync/semaphore"
)

// credit is one shard worker's part of its stream's byte window: the bytes
// of the batches it has in flight (and of the one it is building).
//
// The window is shared by every shard of the stream, and a worker gives
// bytes back only when it reads its own acks. So the rule that keeps the
// window free of deadlock (issue #15: 88 data workers each blocked taking
// bytes while holding bytes only they could give back) is:
//
//   - a worker that holds bytes never waits for more: it only tries, and
//     when that fails it reads its acks first (errNoCredit);
//   - a worker that holds none may wait (in the semaphore's FIFO order): it
//     holds nothing another worker waits for.
//
// Acks depend only on the applier, never on a worker's next batch, so every
// holder eventually gets its bytes back and every waiter is served.
type credit struct {
	win  *semaphore.Weighted
	max  int64 // the window's size: no take is larger
	held int64 // owned by the worker's goroutine only
	// onWait, if set, is called before take waits (the worker shows it).
	onWait func()
}

// errNoCredit: the window is full and the worker holds bytes of its own:
// it must take its acks before it reads or sends more.
var errNoCredit = errors.New("stream byte window full: waiting for this shard's acks to free it")

func newCredit(win *semaphore.Weighted, max int64) *credit { return &credit{win: win, max: max} }

// take reserves n bytes (at most the window's size); it waits only when the
// worker holds none.
func (c *credit) take(ctx context.Context, n int64) (int64, error) {
	n = min(max(n, 0), c.max)
	if n == 0 {
		// Acquire(0) would queue behind waiters (and TryAcquire(0) fail).
		return 0, nil
	}
	if c.held > 0 {
		if !c.win.TryAcquire(n) {
			return 0, errNoCredit
		}
	} else if !c.win.TryAcquire(n) {
		if c.onWait != nil {
			c.onWait()
		}
		if err := c.win.Acquire(ctx, n); err != nil {
			return 0, fmt.Errorf("wait for %d bytes of the stream's byte window: %w", n, err)
		}
	}
	c.held += n
	return n, nil
}

// give returns n bytes taken earlier.
func (c *credit) give(n int64) {
	if n <= 0 {
		return
	}
	if n > c.held {
		panic(fmt.Sprintf("credit: give %d bytes, hold %d", n, c.held))
	}
	c.held -= n
	c.win.Release(n)
}

// giveAll returns every byte the worker holds (its subscription ended:
// its batches in flight will be sent again to the next holder).
func (c *credit) giveAll() { c.give(c.held) }
