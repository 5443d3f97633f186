//go:build integration

package synctest

import (
	"bytes"
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/stretchr/testify/require"
)

// Deletes around a reshard (issue #11, hole 6): deletes logged in the old
// instance's bilog that the exporter has not read when the reshard
// happens (it is stopped across it), deletes logged in the new instance
// right after it, and, live, deletes a moment after two reshards in a row
// (make chaos seed 1 extended: `b00/ünï/k01131`, deleted one second after
// its bucket's second reshard in two minutes, never reached zone-b).
func TestDataSyncDeletesAroundAReshard(t *testing.T) {
	e, p, uid, c := newOwnedEnv(t, "rd")
	b := p + "-b"
	e.Bucket(c, b)
	exp := e.StartExporter(dataOn)
	e.StartApplier("a1")
	del := func(k string) {
		_, err := c.DeleteObject(context.Background(), &s3.DeleteObjectInput{Bucket: aws.String(b), Key: aws.String(k)})
		require.NoError(t, err)
	}
	reshard := func(n int) {
		e.Lab.Admin(t, "zone-a", "bucket", "reshard", "--bucket="+b, fmt.Sprintf("--num-shards=%d", n), "--yes-i-really-mean-it")
	}
	for i := range 60 {
		PutObject(t, c, b, fmt.Sprintf("d/%02d", i), RandomBytes(30+i), nil)
	}
	e.WaitObjectsEqual(2*time.Minute, uid, b)

	require.NoError(t, exp.Stop())
	for i := range 10 {
		del(fmt.Sprintf("d/%02d", i)) // in the old instance's bilog, unread
	}
	reshard(13)
	for i := 10; i < 20; i++ {
		del(fmt.Sprintf("d/%02d", i)) // in the new instance's
	}
	PutObject(t, c, b, "e/after-the-stop", []byte("new"), nil)
	exp = e.StartExporter(dataOn)
	e.WaitObjectsEqual(2*time.Minute, uid, b)

	reshard(5)
	reshard(9)
	for i := 20; i < 40; i++ {
		del(fmt.Sprintf("d/%02d", i))
		if i%5 == 0 {
			time.Sleep(200 * time.Millisecond)
		}
	}
	e.WaitObjectsEqual(2*time.Minute, uid, b)

	// Under load: writes and deletes of one key space go on while the
	// bucket is resharded three times and the exporter is killed once.
	stop := make(chan struct{})
	done := make(chan struct{})
	go func() {
		defer close(done)
		for i := 0; ; i++ {
			select {
			case <-stop:
				return
			default:
			}
			k := fmt.Sprintf("l/%02d", i%25)
			if i%3 == 2 {
				_, _ = c.DeleteObject(context.Background(), &s3.DeleteObjectInput{Bucket: aws.String(b), Key: aws.String(k)})
			} else {
				_, _ = c.PutObject(context.Background(), &s3.PutObjectInput{Bucket: aws.String(b), Key: aws.String(k),
					Body: bytes.NewReader(RandomBytes(20 + i%50))})
			}
			time.Sleep(20 * time.Millisecond)
		}
	}()
	time.Sleep(time.Second)
	reshard(3)
	time.Sleep(time.Second)
	exp.Kill()
	reshard(17)
	e.StartExporter(dataOn)
	time.Sleep(time.Second)
	reshard(4)
	time.Sleep(time.Second)
	close(stop)
	<-done
	e.WaitObjectsEqual(2*time.Minute, uid, b)
}
