//go:build integration

package synctest

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/stretchr/testify/require"

	"github.com/rgwsync/rgwsync/internal/labtest"
)

// Objects written and deleted right away, while the replicator follows:
// every delete reaches the destination (no fault involved).
func TestPutThenDeleteNoFaults(t *testing.T) {
	e := NewEnv(t)
	p := labtest.RandomName("pd")
	e.Only(p)
	uid := p + "-owner"
	c := e.User(uid, "Owner")
	b := p + "-b"
	e.Bucket(c, b)
	e.StartExporter(dataOn)
	e.StartApplier("a1")
	e.WaitMetadataEqual(60*time.Second, Prefix(p))
	ctx := context.Background()
	for i := range 150 {
		k := fmt.Sprintf("k%03d", i)
		PutObject(t, c, b, k, RandomBytes(200), nil)
		if i%3 != 0 {
			_, err := c.DeleteObject(ctx, &s3.DeleteObjectInput{Bucket: aws.String(b), Key: aws.String(k)})
			require.NoError(t, err)
		}
		time.Sleep(20 * time.Millisecond)
	}
	e.WaitObjectsEqual(2*time.Minute, uid, b)
}
