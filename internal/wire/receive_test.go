package wire

import (
	"context"
	"errors"
	"testing"

	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"
)

func TestReceiveDeliversThenEnds(t *testing.T) {
	defer goleak.VerifyNone(t)
	in := []int{1, 2, 3}
	end := errors.New("stream ended")
	msgs, errc := Receive(context.Background(), func() (int, error) {
		if len(in) == 0 {
			return 0, end
		}
		m := in[0]
		in = in[1:]
		return m, nil
	})
	for _, want := range []int{1, 2, 3} {
		require.Equal(t, want, <-msgs)
	}
	require.ErrorIs(t, <-errc, end)
}

// Nobody reads the message: the pump still ends with its context.
func TestReceiveEndsWithItsContext(t *testing.T) {
	defer goleak.VerifyNone(t)
	ctx, cancel := context.WithCancel(context.Background())
	_, errc := Receive(ctx, func() (int, error) { return 7, nil })
	cancel()
	require.ErrorIs(t, <-errc, context.Canceled)
}

func TestSendStopsAtTheFirstFailure(t *testing.T) {
	defer goleak.VerifyNone(t)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	out := make(chan int, 3)
	out <- 1
	out <- 2
	out <- 3
	var got, after []int
	broken := errors.New("broken pipe")
	errc := Send(ctx, out, func(m int) error {
		got = append(got, m)
		if m == 2 {
			return broken
		}
		return nil
	}, func(m int) { after = append(after, m) }, cancel)
	require.ErrorIs(t, <-errc, broken)
	require.Equal(t, []int{1, 2}, got)
	require.Equal(t, []int{1, 2}, after, "sent runs for the failed message too")
	require.Error(t, ctx.Err(), "a failed send cancels the stream")
}

func TestSendEndsWithItsContext(t *testing.T) {
	defer goleak.VerifyNone(t)
	ctx, cancel := context.WithCancel(context.Background())
	errc := Send(ctx, make(chan int), func(int) error { return nil }, nil, cancel)
	cancel()
	require.NoError(t, <-errc)
}
