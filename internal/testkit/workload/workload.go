// Package workload drives a mixed, reproducible stream of writes on the
// source zone: users, buckets, small and multipart objects, overwrites,
// deletes, objects deleted right after they were written, buckets emptied
// and removed while their objects sync, and versioned writes, version
// deletes and delete markers in a versioned bucket. The choice of every
// operation, key and body comes from one seed (math/rand/v2 PCG), so a seed
// replays the same sequence of requests (what the zones do with them
// concurrently with the replicator is, of course, not replayed).
package workload

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"os/exec"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/aws/aws-sdk-go-v2/service/s3/types"
	"github.com/rgwsync/rgwsync/internal/testkit/labtest"
)

// Op kinds, as counted in Counts.
const (
	OpUser           = "user"
	OpBucket         = "bucket"
	OpPut            = "put"
	OpMultipart      = "multipart"
	OpOverwrite      = "overwrite"
	OpDelete         = "delete"
	OpPutThenDelete  = "put-then-delete"
	OpRemoveBucket   = "remove-bucket"
	OpVersionedPut   = "versioned-put"
	OpDeleteMarker   = "delete-marker"
	OpDeleteVersion  = "delete-version"
	OpVersionedOverw = "versioned-overwrite"
	OpVersionTags    = "version-tags"      // tags of a version (current or older) set or removed
	OpVersionACL     = "version-acl"       // a version's ACL set to public-read or private
	OpToggleVersions = "toggle-versioning" // the versioned bucket suspended, or enabled again
	OpReshard        = "reshard"           // a plain bucket resharded (radosgw-admin)
	OpTenantObject   = "tenant-object"     // an object of a tenant's bucket written, overwritten or deleted
)

// Config describes a workload.
type Config struct {
	Seed uint64
	// Prefix starts every user and bucket name (it must be a valid bucket
	// name start: lower case).
	Prefix string
	// Owner is the uid of the user that owns every bucket (created by New).
	Owner string
	// Endpoint is the source zone (http://host:port).
	Endpoint string
	// LabDir holds ceph.conf for radosgw-admin (users are made with it).
	LabDir string
	// Zone is the source zone's name for radosgw-admin (default zone-a).
	Zone string
	// Pace is the pause between two operations (0: none).
	Pace time.Duration
	// MaxBuckets caps the plain buckets alive at once (default 6).
	MaxBuckets int
	// PartSize is the multipart part size (default 5 MiB, the S3 minimum).
	PartSize int
	// Extended adds the operations of issue #11 that rgwsync does not
	// survive yet under faults: tag and ACL changes of versions, versioning
	// suspended and enabled again on the versioned bucket, reshards of
	// plain buckets (RELIABILITY.md, finding 11), and a tenant's user and
	// bucket with objects written, overwritten and deleted. Off, their
	// weight is zero, no tenant is made and the seeded stream is the one
	// before.
	Extended bool
}

// Record is one operation done.
type Record struct {
	N       int
	Op      string
	Bucket  string
	Key     string
	Version string
	Size    int
	At      time.Time
}

// Workload is a seeded stream of writes.
type Workload struct {
	cfg    Config
	rng    *rand.Rand
	owner  *s3.Client
	mu     sync.Mutex
	recs   []Record
	counts map[string]int
	n      int
	// state
	buckets   []string            // plain buckets alive (the first is never removed)
	versioned string              // the versioned bucket
	keys      map[string][]string // live keys per plain bucket
	vkeys     []string            // keys written in the versioned bucket
	suspended bool                // the versioned bucket's versioning is suspended
	removed   []string            // buckets removed
	users     int
	bucketSeq int
	// the tenant's user, client, bucket and live keys (Extended)
	tenantUser   string
	tenant       *s3.Client
	tenantBucket string
	tkeys        []string
}

// New creates the owner (radosgw-admin on the source zone), a first plain
// bucket and the versioned bucket.
func New(ctx context.Context, cfg Config) (*Workload, error) {
	if cfg.Zone == "" {
		cfg.Zone = "zone-a"
	}
	if cfg.MaxBuckets == 0 {
		cfg.MaxBuckets = 6
	}
	if cfg.PartSize == 0 {
		cfg.PartSize = 5 << 20
	}
	w := &Workload{cfg: cfg, rng: rand.New(rand.NewPCG(cfg.Seed, 0x9e3779b97f4a7c15)), counts: map[string]int{},
		keys: map[string][]string{}}
	var err error
	if w.owner, err = w.newUser(ctx, cfg.Owner); err != nil {
		return nil, err
	}
	if err := w.newBucket(ctx); err != nil {
		return nil, err
	}
	w.versioned = cfg.Prefix + "-ver"
	if _, err := w.owner.CreateBucket(ctx, &s3.CreateBucketInput{Bucket: aws.String(w.versioned)}); err != nil {
		return nil, fmt.Errorf("create bucket %s: %w", w.versioned, err)
	}
	if _, err := w.owner.PutBucketVersioning(ctx, &s3.PutBucketVersioningInput{Bucket: aws.String(w.versioned),
		VersioningConfiguration: &types.VersioningConfiguration{Status: types.BucketVersioningStatusEnabled}}); err != nil {
		return nil, fmt.Errorf("enable versioning on %s: %w", w.versioned, err)
	}
	if cfg.Extended {
		if err := w.newTenant(ctx); err != nil {
			return nil, err
		}
	}
	return w, nil
}

// Keys returns the access and secret key Users give uid (the harness's
// convention, so synctest.UserOn reaches the user on either zone).
func Keys(uid string) (ak, sk string) {
	return strings.ToUpper(strings.NewReplacer("$", "", "-", "").Replace(uid)) + "AK", uid + "-secret-key"
}

// Client is an S3 client of uid on endpoint.
func Client(endpoint, uid string) *s3.Client {
	ak, sk := Keys(uid)
	return labtest.S3(endpoint, ak, sk)
}

// newUser creates uid ("tenant$name" for a tenant's user) on the source.
func (w *Workload) newUser(ctx context.Context, uid string) (*s3.Client, error) {
	ak, sk := Keys(uid)
	id := []string{"--uid=" + uid}
	if tenant, name, ok := strings.Cut(uid, "$"); ok {
		id = []string{"--tenant=" + tenant, "--uid=" + name}
	}
	args := append([]string{"-c", filepath.Join(w.cfg.LabDir, "ceph.conf"), "-n", "client.admin",
		"--rgw-zone=" + w.cfg.Zone, "user", "create"}, id...)
	args = append(args, "--display-name=workload "+uid, "--access-key="+ak, "--secret="+sk)
	cmd := exec.CommandContext(ctx, (&labtest.Lab{Dir: w.cfg.LabDir}).RadosgwAdmin(), args...)
	if out, err := cmd.CombinedOutput(); err != nil {
		return nil, fmt.Errorf("radosgw-admin user create %s: %v\n%s", uid, err, out)
	}
	w.users++
	return Client(w.cfg.Endpoint, uid), nil
}

func (w *Workload) newBucket(ctx context.Context) error {
	name := fmt.Sprintf("%s-b%02d", w.cfg.Prefix, w.bucketSeq)
	w.bucketSeq++
	if _, err := w.owner.CreateBucket(ctx, &s3.CreateBucketInput{Bucket: aws.String(name)}); err != nil {
		return fmt.Errorf("create bucket %s: %w", name, err)
	}
	w.mu.Lock()
	w.buckets = append(w.buckets, name)
	w.mu.Unlock()
	w.record(Record{Op: OpBucket, Bucket: name})
	return nil
}

// Buckets are the buckets that exist now (plain and versioned), sorted.
func (w *Workload) Buckets() []string {
	w.mu.Lock()
	defer w.mu.Unlock()
	out := append(slices.Clone(w.buckets), w.versioned)
	sort.Strings(out)
	return out
}

// Removed are the buckets the workload emptied and deleted.
func (w *Workload) Removed() []string {
	w.mu.Lock()
	defer w.mu.Unlock()
	return slices.Clone(w.removed)
}

// Records returns what was done so far.
func (w *Workload) Records() []Record {
	w.mu.Lock()
	defer w.mu.Unlock()
	return slices.Clone(w.recs)
}

// Counts returns the operations done, by kind.
func (w *Workload) Counts() map[string]int {
	w.mu.Lock()
	defer w.mu.Unlock()
	out := map[string]int{}
	for k, v := range w.counts {
		out[k] = v
	}
	return out
}

// Owner is the uid owning the buckets.
func (w *Workload) Owner() string { return w.cfg.Owner }

func (w *Workload) record(r Record) {
	w.mu.Lock()
	defer w.mu.Unlock()
	r.N = w.n
	r.At = time.Now()
	w.recs = append(w.recs, r)
	w.counts[r.Op]++
}

// Run does n operations (n <= 0: until ctx ends), one after the other,
// Pace apart. It stops at the first failed request of the source zone and
// returns it (ctx ending is not an error).
func (w *Workload) Run(ctx context.Context, n int) error {
	for i := 0; n <= 0 || i < n; i++ {
		if ctx.Err() != nil {
			return nil
		}
		w.n++
		if err := w.step(ctx); err != nil {
			if ctx.Err() != nil {
				return nil
			}
			return fmt.Errorf("workload op %d: %w", w.n, err)
		}
		if w.cfg.Pace > 0 {
			select {
			case <-ctx.Done():
				return nil
			case <-time.After(w.cfg.Pace):
			}
		}
	}
	return nil
}

// weights of the operations (per 1000).
var ops = []struct {
	name   string
	weight int
}{
	{OpUser, 15},
	{OpBucket, 20},
	{OpPut, 330},
	{OpMultipart, 15},
	{OpOverwrite, 120},
	{OpDelete, 100},
	{OpPutThenDelete, 60},
	{OpRemoveBucket, 10},
	{OpVersionedPut, 150},
	{OpVersionedOverw, 60},
	{OpDeleteMarker, 70},
	{OpDeleteVersion, 50},
	{OpVersionTags, 30},
	{OpVersionACL, 12},
	{OpToggleVersions, 8},
	{OpReshard, 4},
	{OpTenantObject, 40},
}

func (w *Workload) pick() string {
	weight := func(name string, wt int) int {
		if !w.cfg.Extended && (name == OpToggleVersions || name == OpReshard || name == OpVersionTags || name == OpVersionACL ||
			name == OpTenantObject) {
			return 0
		}
		return wt
	}
	total := 0
	for _, o := range ops {
		total += weight(o.name, o.weight)
	}
	r := w.rng.IntN(total)
	for _, o := range ops {
		if r < weight(o.name, o.weight) {
			return o.name
		}
		r -= weight(o.name, o.weight)
	}
	return OpPut
}

func (w *Workload) body(n int) []byte {
	b := make([]byte, n)
	for i := 0; i < n; i += 8 {
		v := w.rng.Uint64()
		for j := 0; j < 8 && i+j < n; j++ {
			b[i+j] = byte(v >> (8 * j))
		}
	}
	return b
}

func (w *Workload) smallSize() int {
	switch w.rng.IntN(10) {
	case 0:
		return 0
	case 1:
		return 1<<20 + w.rng.IntN(1<<20) // over the exporter's inline_max: chunked
	default:
		return 1 + w.rng.IntN(16<<10)
	}
}

func (w *Workload) put(ctx context.Context, bucket, key string, body []byte) (string, error) {
	in := &s3.PutObjectInput{Bucket: aws.String(bucket), Key: aws.String(key), Body: bytes.NewReader(body)}
	switch w.rng.IntN(4) {
	case 0:
		in.ContentType = aws.String("text/plain")
		in.Metadata = map[string]string{"seq": fmt.Sprint(w.n)}
	case 1:
		in.Tagging = aws.String(fmt.Sprintf("op=%d&kind=chaos", w.n))
	}
	out, err := w.owner.PutObject(ctx, in)
	if err != nil {
		return "", fmt.Errorf("put %s/%s: %w", bucket, key, err)
	}
	return aws.ToString(out.VersionId), nil
}

func (w *Workload) randomBucket() string { return w.buckets[w.rng.IntN(len(w.buckets))] }

func (w *Workload) newKey() string {
	dirs := []string{"", "a/", "a/b/", "deep/x/y/", "sp ace/", "ünï/"}
	return fmt.Sprintf("%sk%05d", dirs[w.rng.IntN(len(dirs))], w.n)
}

func (w *Workload) step(ctx context.Context) error {
	op := w.pick()
	switch op {
	case OpUser:
		uid := fmt.Sprintf("%s-u%04d", w.cfg.Prefix, w.users)
		if _, err := w.newUser(ctx, uid); err != nil {
			return err
		}
		w.record(Record{Op: op, Key: uid})
		return nil
	case OpBucket:
		if len(w.buckets) >= w.cfg.MaxBuckets {
			return w.putNew(ctx)
		}
		return w.newBucket(ctx)
	case OpPut:
		return w.putNew(ctx)
	case OpMultipart:
		return w.multipartObject(ctx, op)
	case OpOverwrite, OpDelete:
		return w.overwriteOrDelete(ctx, op)
	case OpPutThenDelete:
		return w.putThenDelete(ctx, op)
	case OpRemoveBucket:
		return w.removeBucket(ctx, op)
	case OpVersionedPut, OpVersionedOverw:
		return w.versionedPut(ctx, op)
	case OpDeleteMarker:
		return w.deleteMarker(ctx, op)
	case OpDeleteVersion:
		return w.deleteVersion(ctx, op)
	case OpVersionTags, OpVersionACL:
		return w.versionAttrs(ctx, op)
	case OpToggleVersions:
		return w.toggleVersioning(ctx, op)
	case OpReshard:
		return w.reshard(ctx, op)
	case OpTenantObject:
		return w.tenantObject(ctx, op)
	}
	return fmt.Errorf("unknown op %q", op)
}

// multipartObject writes a new multipart object.
func (w *Workload) multipartObject(ctx context.Context, op string) error {
	b, k := w.randomBucket(), w.newKey()+".mp"
	parts := []int{w.cfg.PartSize, 1 + w.rng.IntN(512<<10)}
	if w.rng.IntN(3) == 0 {
		parts = []int{w.cfg.PartSize, w.cfg.PartSize, 1 + w.rng.IntN(w.cfg.PartSize)}
	}
	if err := w.multipart(ctx, b, k, parts); err != nil {
		return err
	}
	w.addKey(b, k)
	w.record(Record{Op: op, Bucket: b, Key: k, Size: sum(parts)})
	return nil
}

// overwriteOrDelete overwrites or deletes an existing object (a new one when there is none).
func (w *Workload) overwriteOrDelete(ctx context.Context, op string) error {
	b := w.randomBucket()
	ks := w.keys[b]
	if len(ks) == 0 {
		return w.putNew(ctx)
	}
	i := w.rng.IntN(len(ks))
	k := ks[i]
	if op == OpOverwrite {
		n := w.smallSize()
		if _, err := w.put(ctx, b, k, w.body(n)); err != nil {
			return err
		}
		w.record(Record{Op: op, Bucket: b, Key: k, Size: n})
		return nil
	}
	if _, err := w.owner.DeleteObject(ctx, &s3.DeleteObjectInput{Bucket: aws.String(b), Key: aws.String(k)}); err != nil {
		return fmt.Errorf("delete %s/%s: %w", b, k, err)
	}
	w.keys[b] = slices.Delete(ks, i, i+1)
	w.record(Record{Op: op, Bucket: b, Key: k})
	return nil
}

// putThenDelete writes an object and deletes it at once.
func (w *Workload) putThenDelete(ctx context.Context, op string) error {
	// The source object is gone by the time the exporter fetches it
	// (most of the time): the log names a write whose object is gone.
	b, k := w.randomBucket(), w.newKey()+".flash"
	if _, err := w.put(ctx, b, k, w.body(w.smallSize())); err != nil {
		return err
	}
	if _, err := w.owner.DeleteObject(ctx, &s3.DeleteObjectInput{Bucket: aws.String(b), Key: aws.String(k)}); err != nil {
		return fmt.Errorf("delete %s/%s: %w", b, k, err)
	}
	w.record(Record{Op: op, Bucket: b, Key: k})
	return nil
}

// removeBucket empties and removes a bucket (never the first).
func (w *Workload) removeBucket(ctx context.Context, op string) error {
	if len(w.buckets) < 2 {
		return w.putNew(ctx)
	}
	i := 1 + w.rng.IntN(len(w.buckets)-1)
	b := w.buckets[i]
	for _, k := range w.keys[b] {
		if _, err := w.owner.DeleteObject(ctx, &s3.DeleteObjectInput{Bucket: aws.String(b), Key: aws.String(k)}); err != nil {
			return fmt.Errorf("delete %s/%s: %w", b, k, err)
		}
	}
	if _, err := w.owner.DeleteBucket(ctx, &s3.DeleteBucketInput{Bucket: aws.String(b)}); err != nil && !w.bucketGone(ctx, b) {
		return fmt.Errorf("delete bucket %s: %w", b, err)
	}
	w.mu.Lock()
	w.buckets = slices.Delete(w.buckets, i, i+1)
	w.removed = append(w.removed, b)
	w.mu.Unlock()
	n := len(w.keys[b])
	delete(w.keys, b)
	w.record(Record{Op: op, Bucket: b, Size: n})
	return nil
}

// bucketGone: the source answers NoSuchBucket for b now. A removal whose
// answer was lost may have been done: the run's end cancels the workload's
// context mid-request (make chaos seed 5 extended: the last operation, the
// removal of chaos5-cca5-b44, was done by zone-a while the workload kept
// the bucket among those to verify, whose listing then failed).
func (w *Workload) bucketGone(ctx context.Context, b string) bool {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 30*time.Second)
	defer cancel()
	_, err := w.owner.HeadBucket(ctx, &s3.HeadBucketInput{Bucket: aws.String(b)})
	var nf *types.NotFound
	return errors.As(err, &nf)
}

func (w *Workload) putNew(ctx context.Context) error {
	b, k := w.randomBucket(), w.newKey()
	n := w.smallSize()
	if _, err := w.put(ctx, b, k, w.body(n)); err != nil {
		return err
	}
	w.addKey(b, k)
	w.record(Record{Op: OpPut, Bucket: b, Key: k, Size: n})
	return nil
}

func (w *Workload) addKey(b, k string) {
	if !slices.Contains(w.keys[b], k) {
		w.keys[b] = append(w.keys[b], k)
	}
}

func (w *Workload) multipart(ctx context.Context, bucket, key string, parts []int) error {
	up, err := w.owner.CreateMultipartUpload(ctx, &s3.CreateMultipartUploadInput{Bucket: aws.String(bucket), Key: aws.String(key),
		ContentType: aws.String("application/x-chaos")})
	if err != nil {
		return fmt.Errorf("create multipart upload %s/%s: %w", bucket, key, err)
	}
	var done []types.CompletedPart
	for i, n := range parts {
		p, err := w.owner.UploadPart(ctx, &s3.UploadPartInput{Bucket: aws.String(bucket), Key: aws.String(key), UploadId: up.UploadId,
			PartNumber: aws.Int32(int32(i + 1)), Body: bytes.NewReader(w.body(n))})
		if err != nil {
			return fmt.Errorf("upload part %d of %s/%s: %w", i+1, bucket, key, err)
		}
		done = append(done, types.CompletedPart{ETag: p.ETag, PartNumber: aws.Int32(int32(i + 1))})
	}
	if _, err := w.owner.CompleteMultipartUpload(ctx, &s3.CompleteMultipartUploadInput{Bucket: aws.String(bucket), Key: aws.String(key),
		UploadId: up.UploadId, MultipartUpload: &types.CompletedMultipartUpload{Parts: done}}); err != nil {
		return fmt.Errorf("complete multipart upload %s/%s: %w", bucket, key, err)
	}
	return nil
}

func sum(xs []int) int {
	t := 0
	for _, x := range xs {
		t += x
	}
	return t
}
