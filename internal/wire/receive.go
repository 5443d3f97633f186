package wire

import "context"

// Receive pumps a gRPC stream's Recv in a goroutine, so that a service's
// loop can select on messages beside its other events. Messages arrive on
// the first channel; the second gets the error that ended the pump (the
// stream's, or ctx's when ctx ended first) and is buffered, so the pump
// never outlives ctx waiting for a reader.
func Receive[T any](ctx context.Context, recv func() (T, error)) (<-chan T, <-chan error) {
	msgs := make(chan T)
	errc := make(chan error, 1)
	go func() {
		for {
			m, err := recv()
			if err != nil {
				errc <- err
				return
			}
			select {
			case msgs <- m:
			case <-ctx.Done():
				errc <- ctx.Err()
				return
			}
		}
	}()
	return msgs, errc
}

// Send is a stream's single writer: it sends what arrives on out until ctx
// ends (then nil comes on the returned channel) or a send fails (then that
// error comes, and cancel is called to end the stream). sent, if not nil,
// is called after each send, whatever its result.
func Send[T any](ctx context.Context, out <-chan T, send func(T) error, sent func(T), cancel context.CancelFunc) <-chan error {
	errc := make(chan error, 1)
	go func() {
		for {
			select {
			case <-ctx.Done():
				errc <- nil
				return
			case m := <-out:
				err := send(m)
				if sent != nil {
					sent(m)
				}
				if err != nil {
					errc <- err
					cancel()
					return
				}
			}
		}
	}()
	return errc
}
