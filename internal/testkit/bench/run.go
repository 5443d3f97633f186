package main

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"github.com/aws/aws-sdk-go-v2/service/s3"

	"github.com/rgwsync/rgwsync/internal/rgwadmin"
	"github.com/rgwsync/rgwsync/internal/rgwlog"
	"github.com/rgwsync/rgwsync/internal/testkit/labtest"
	"github.com/rgwsync/rgwsync/internal/testkit/synctest"
	"github.com/rgwsync/rgwsync/internal/verify"
)

// zones are the clients of one lab.
type zones struct {
	lab      *labtest.Lab
	src, dst *rgwadmin.Client
}

func newZones(lab *labtest.Lab) (*zones, error) {
	src, err := rgwadmin.New(rgwadmin.Config{Endpoint: lab.ZoneA, AccessKey: lab.AccessKey, SecretKey: lab.SecretKey})
	if err != nil {
		return nil, err
	}
	dst, err := rgwadmin.New(rgwadmin.Config{Endpoint: lab.ZoneB, AccessKey: lab.AccessKey, SecretKey: lab.SecretKey})
	if err != nil {
		return nil, err
	}
	return &zones{lab: lab, src: src, dst: dst}, nil
}

// warmUp writes a user, a bucket and an object and waits until zone-b
// has the object (a fresh built-in sync misses changes for ~15 s).
func warmUp(ctx context.Context, z *zones, s system) error {
	u := newUser("warm" + shortHex(4))
	if err := createUsers(ctx, z.lab.ZoneA, []user{u}); err != nil {
		return err
	}
	b := u.uid + "-b"
	if err := createBuckets(ctx, func(int) *s3.Client { return u.on(z.lab.ZoneA) }, []string{b}); err != nil {
		return err
	}
	if err := putSmall(ctx, u.on(z.lab.ZoneA), []string{b}, 1, 10); err != nil {
		return err
	}
	want, err := sourceState(ctx, u.on(z.lab.ZoneA), []string{b})
	if err != nil {
		return err
	}
	t := time.Now()
	if err := waitListed(ctx, u.on(z.lab.ZoneB), want, 5*time.Minute); err != nil {
		return fmt.Errorf("%s warm-up: %w", s.name(), err)
	}
	logf("%s: warm-up object on zone-b after %.1f s", s.name(), time.Since(t).Seconds())
	return nil
}

// smallObjects: one user, smallBuckets buckets, smallObjects objects,
// written while s is paused; timed from resume until zone-b lists them
// all. Returns the user and buckets (the copy floor reads them).
func smallObjects(ctx context.Context, o options, z *zones, s system, r *results, p, key string) (user, []string, error) {
	u := newUser(p + "-so")
	var buckets []string
	for i := range o.smallBuckets {
		buckets = append(buckets, fmt.Sprintf("%s-s%02d", p, i))
	}
	if err := s.pause(ctx); err != nil {
		return u, nil, err
	}
	tw := time.Now()
	if err := createUsers(ctx, z.lab.ZoneA, []user{u}); err != nil {
		return u, nil, err
	}
	src := u.on(z.lab.ZoneA)
	if err := createBuckets(ctx, func(int) *s3.Client { return src }, buckets); err != nil {
		return u, nil, err
	}
	if err := putSmall(ctx, src, buckets, o.smallObjects/o.smallBuckets, o.smallSize); err != nil {
		return u, nil, err
	}
	logf("%s: small objects written on zone-a in %.1f s", s.name(), time.Since(tw).Seconds())
	want, err := sourceState(ctx, src, buckets)
	if err != nil {
		return u, nil, err
	}
	n := 0
	for _, objs := range want {
		n += len(objs)
	}
	t := time.Now()
	if err := s.resume(ctx); err != nil {
		return u, nil, err
	}
	if err := waitListed(ctx, u.on(z.lab.ZoneB), want, 15*time.Minute); err != nil {
		return u, nil, fmt.Errorf("%s small objects: %w", s.name(), err)
	}
	el := time.Since(t)
	if err := s.done(ctx, key); err != nil {
		return u, nil, err
	}
	r.add(key+"/"+s.name(), float64(n)/el.Seconds())
	logf("%s: %d small objects caught up in %.2f s (%.0f objects/s)", s.name(), n, el.Seconds(), float64(n)/el.Seconds())
	k, err := checkSample(ctx, u.on(z.lab.ZoneB), want, 200)
	if err != nil {
		return u, nil, err
	}
	logf("%s: size and ETag of %d sampled objects equal", s.name(), k)
	return u, buckets, nil
}

// largeObjects: count objects of size bytes (multipart) in one new bucket.
func largeObjects(ctx context.Context, o options, z *zones, s system, r *results, u user, p, phase string, count int, size int64) (string, error) {
	b := p + "-" + phase
	src := u.on(z.lab.ZoneA)
	if err := s.pause(ctx); err != nil {
		return "", err
	}
	tw := time.Now()
	if err := createBuckets(ctx, func(int) *s3.Client { return src }, []string{b}); err != nil {
		return "", err
	}
	for i := range count {
		if err := putMultipart(ctx, src, b, fmt.Sprintf("large-%d", i), size, o.partSize); err != nil {
			return "", err
		}
	}
	logf("%s: %d x %d MiB written on zone-a in %.1f s", s.name(), count, size>>20, time.Since(tw).Seconds())
	want, err := sourceState(ctx, src, []string{b})
	if err != nil {
		return "", err
	}
	t := time.Now()
	if err := s.resume(ctx); err != nil {
		return "", err
	}
	if err := waitListed(ctx, u.on(z.lab.ZoneB), want, 15*time.Minute); err != nil {
		return "", fmt.Errorf("%s %s objects: %w", s.name(), phase, err)
	}
	el := time.Since(t)
	if err := s.done(ctx, phase); err != nil {
		return "", err
	}
	mibs := float64(int64(count)*size) / (1 << 20) / el.Seconds()
	r.add(phase+"/"+s.name(), mibs)
	logf("%s: %d x %d MiB caught up in %.2f s (%.0f MiB/s)", s.name(), count, size>>20, el.Seconds(), mibs)
	if _, err := checkSample(ctx, u.on(z.lab.ZoneB), want, 0); err != nil {
		return "", err
	}
	return b, nil
}

// metadata: users users and buckets buckets (spread over them) written
// while s is paused; timed until zone-b has every user, bucket and
// bucket instance.
func metadata(ctx context.Context, o options, z *zones, s system, r *results, p, key string) error {
	if err := s.pause(ctx); err != nil {
		return err
	}
	users, buckets, err := writeMetadata(ctx, o, z, p, s.name())
	if err != nil {
		return err
	}
	t := time.Now()
	if err := s.resume(ctx); err != nil {
		return err
	}
	if err := waitMetadata(ctx, z.dst, users, buckets, 15*time.Minute); err != nil {
		return fmt.Errorf("%s metadata: %w", s.name(), err)
	}
	el := time.Since(t)
	if err := s.done(ctx, key); err != nil {
		return err
	}
	n := float64(len(users) + len(buckets))
	r.add(key+"/"+s.name(), n/el.Seconds())
	logf("%s: %d users + %d buckets caught up in %.2f s (%.0f items/s)", s.name(), len(users), len(buckets), el.Seconds(), n/el.Seconds())
	if _, ok := s.(*deployment); ok {
		diffs, err := verify.Metadata(ctx, z.src, z.dst, rgwlog.DefaultSections, synctest.Prefix(p+"-m"))
		if err != nil {
			return err
		}
		if len(diffs) > 0 {
			return fmt.Errorf("verify metadata: %d differences, first: %s", len(diffs), diffs[0])
		}
		logf("%s: metadata verifier: zones equal", s.name())
	}
	return nil
}

// writeMetadata writes the metadata workload on zone-a: o.users users and
// o.metaBuckets buckets spread over them, named after p. It returns the
// user ids and the bucket names.
func writeMetadata(ctx context.Context, o options, z *zones, p, who string) (uids, buckets []string, err error) {
	var users []user
	for i := range o.users {
		users = append(users, newUser(fmt.Sprintf("%s-mu%03d", p, i)))
		uids = append(uids, users[i].uid)
	}
	for i := range o.metaBuckets {
		buckets = append(buckets, fmt.Sprintf("%s-mb%04d", p, i))
	}
	tw := time.Now()
	if err := createUsers(ctx, z.lab.ZoneA, users); err != nil {
		return nil, nil, err
	}
	clients := make([]*s3.Client, len(users))
	for i, u := range users {
		clients[i] = u.on(z.lab.ZoneA)
	}
	if err := createBuckets(ctx, func(i int) *s3.Client { return clients[i%len(clients)] }, buckets); err != nil {
		return nil, nil, err
	}
	logf("%s: %d users + %d buckets written on zone-a in %.1f s", who, len(users), len(buckets), time.Since(tw).Seconds())
	return uids, buckets, nil
}

// metadataFloor is the plain copier's rate for the metadata workload, with
// rgwsync stopped: every user, then every bucket's instance and entry
// point, GET from zone-a and PUT to zone-b, copyWorkers side by side. It is
// the scale row's yardstick: how the gateways themselves slow down as the
// zones grow (a new bucket adds 11 index objects to each zone's one OSD).
func metadataFloor(ctx context.Context, o options, z *zones, r *results, p, key string) error {
	users, buckets, err := writeMetadata(ctx, o, z, p, "copy floor")
	if err != nil {
		return err
	}
	t := time.Now()
	if err := parallel(ctx, o.copyWorkers, len(users), func(ctx context.Context, i int) error {
		return copyUserMetadata(ctx, z.src, z.dst, users[i])
	}); err != nil {
		return err
	}
	if err := parallel(ctx, o.copyWorkers, len(buckets), func(ctx context.Context, i int) error {
		return copyBucketMetadata(ctx, z.src, z.dst, buckets[i])
	}); err != nil {
		return err
	}
	el := time.Since(t)
	n := float64(len(users) + len(buckets))
	r.add(key+"/copy floor", n/el.Seconds())
	logf("copy floor: %d users + %d buckets in %.2f s (%.0f items/s)", len(users), len(buckets), el.Seconds(), n/el.Seconds())
	return nil
}

// scaleRun runs the small-object and metadata workloads again at o.scale
// times their size (the same number of buckets for the objects: more per
// bucket shard, as in a real zone's first full sync), so that the cost per
// item is compared as the size grows, in the same run (issue #15: a full
// sync of 25,000 objects deadlocked where 5,000 did not).
func scaleRun(ctx context.Context, o options, z *zones, s system, r *results, p string) error {
	if o.scale <= 1 {
		return nil
	}
	big := o
	big.smallObjects, big.users, big.metaBuckets = o.smallObjects*o.scale, o.users*o.scale, o.metaBuckets*o.scale
	if _, _, err := smallObjects(ctx, big, z, s, r, p+"x", "small-scale"); err != nil {
		return err
	}
	return metadata(ctx, big, z, s, r, p+"x", "metadata-scale")
}

// lagRun: with s running and caught up, one small object every lagEvery.
func lagRun(ctx context.Context, o options, z *zones, s system, r *results, u user, p string) error {
	b := p + "-lag"
	src := u.on(z.lab.ZoneA)
	if err := createBuckets(ctx, func(int) *s3.Client { return src }, []string{b}); err != nil {
		return err
	}
	if err := putSmall(ctx, src, []string{b}, 1, 10); err != nil {
		return err
	}
	want, err := sourceState(ctx, src, []string{b})
	if err != nil {
		return err
	}
	if err := waitListed(ctx, u.on(z.lab.ZoneB), want, 5*time.Minute); err != nil {
		return err
	}
	lags, err := lag(ctx, src, u.on(z.lab.ZoneB), b, o.lagFor, o.lagEvery, o.smallSize)
	if err != nil {
		return fmt.Errorf("%s: %w", s.name(), err)
	}
	p50, p99 := percentile(lags, 0.50), percentile(lags, 0.99)
	r.add("lag50/"+s.name(), float64(p50.Microseconds())/1000)
	r.add("lag99/"+s.name(), float64(p99.Microseconds())/1000)
	logf("%s: lag of %d objects: p50 %s, p99 %s, max %s", s.name(), len(lags), p50.Round(time.Millisecond), p99.Round(time.Millisecond), lags[len(lags)-1].Round(time.Millisecond))
	return idleLoad(ctx, z, s, r)
}

// idleFor is how long idleLoad counts the requests of an idle system.
const idleFor = 30 * time.Second

// idleLoad counts the requests zone-a's gateway logs (its access log, one
// "beast:" line a request) while s runs with nothing to sync: the cost of
// waiting for changes. After the lag run, the lag bucket's changes are
// idleFor old when the count ends (hot shards cool after 40 s).
func idleLoad(ctx context.Context, z *zones, s system, r *results) error {
	path := filepath.Join(z.lab.Dir, "log", "client.rgw.a.log")
	count := func() (int, error) {
		b, err := os.ReadFile(path)
		if err != nil {
			return 0, fmt.Errorf("idle load: %w", err)
		}
		return bytes.Count(b, []byte(" beast: ")), nil
	}
	select { // let the lag run's last batches finish
	case <-ctx.Done():
		return ctx.Err()
	case <-time.After(2 * time.Second):
	}
	before, err := count()
	if err != nil {
		return err
	}
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-time.After(idleFor):
	}
	after, err := count()
	if err != nil {
		return err
	}
	perS := float64(after-before) / idleFor.Seconds()
	r.add("idle/"+s.name(), perS)
	logf("%s: idle source: %d requests in %s (%.1f/s)", s.name(), after-before, idleFor, perS)
	return nil
}

func runRgwsyncLab(ctx context.Context, tb *benchTB, o options, r *results) error {
	lab, err := o.labA.boot()
	if err != nil {
		return err
	}
	z, err := newZones(lab)
	if err != nil {
		return err
	}
	logLevel = o.logLevel
	return protect(func() error {
		d := &deployment{r: r}
		d.expBin, d.appBin = synctest.Binaries(tb)
		d.env = &synctest.Env{T: tb, Lab: lab, Dir: tb.TempDir(), Dest: "zone-b", ExporterAddr: synctest.FreeAddr(tb),
			Src: z.src, Dst: z.dst, DestEndpoint: lab.ZoneB}
		d.expMetrics, d.appMetrics = synctest.FreeAddr(tb), synctest.FreeAddr(tb)
		d.expCfg = filepath.Join(d.env.Dir, "exporter.yaml")
		d.appCfg = filepath.Join(d.env.Dir, "applier.yaml")
		writeConfig(d.expCfg, fmt.Sprintf(`id: bench-exporter
listen: %s
metrics_listen: %s
bounds_path: %s
source:
  endpoint: %s
  access_key: %s
  secret_key: %s
tls:
  insecure: true
`, d.env.ExporterAddr, d.expMetrics, filepath.Join(d.env.Dir, "bounds.db"), lab.ZoneA, lab.AccessKey, lab.SecretKey))
		writeConfig(d.appCfg, fmt.Sprintf(`id: bench-applier
exporter: %s
listen: %s
metrics_listen: %s
destination:
  endpoint: %s
  access_key: %s
  secret_key: %s
tls:
  insecure: true
`, d.env.ExporterAddr, synctest.FreeAddr(tb), d.appMetrics, lab.ZoneB, lab.AccessKey, lab.SecretKey))
		if err := d.resume(ctx); err != nil {
			return err
		}
		if err := warmUp(ctx, z, d); err != nil {
			return err
		}
		for round := 1; round <= o.rounds; round++ {
			d.round = round
			p := fmt.Sprintf("r%d%s", round, shortHex(3))
			if o.verifyObjects > 0 {
				if err := verifyRun(ctx, o, z, d, r, p); err != nil {
					return err
				}
			}
			if o.verifyOnly {
				continue
			}
			u, small, err := smallObjects(ctx, o, z, d, r, p, "small")
			if err != nil {
				return err
			}
			large, err := largeObjects(ctx, o, z, d, r, u, p, "large", o.largeCount, o.largeSize)
			if err != nil {
				return err
			}
			if o.hugeSize > 0 {
				if _, err := largeObjects(ctx, o, z, d, r, u, p, "huge", 1, o.hugeSize); err != nil {
					return err
				}
			}
			if err := metadata(ctx, o, z, d, r, p, "metadata"); err != nil {
				return err
			}
			if err := scaleRun(ctx, o, z, d, r, p); err != nil {
				return err
			}
			if o.lagFor > 0 {
				if err := d.settle(ctx); err != nil {
					return err
				}
				if err := lagRun(ctx, o, z, d, r, u, p); err != nil {
					return err
				}
			}
			if err := d.pause(ctx); err != nil {
				return err
			}
			if err := copyFloor(ctx, o, z, r, u, p, small, large); err != nil {
				return err
			}
			if o.scale > 1 {
				// The metadata floor at 1x and at the scale row's size.
				if err := metadataFloor(ctx, o, z, r, p+"f", "metadata"); err != nil {
					return err
				}
				big := o
				big.users, big.metaBuckets = o.users*o.scale, o.metaBuckets*o.scale
				if err := metadataFloor(ctx, big, z, r, p+"fx", "metadata-scale"); err != nil {
					return err
				}
			}
		}
		err := d.pause(ctx)
		keepLogs(d.env.Dir)
		return err
	})
}

// keepLogs copies the services' logs to .tmp/bench-logs (the temporary
// directory goes at the end).
func keepLogs(dir string) {
	out := filepath.Join(labtest.Root(), ".tmp", "bench-logs")
	_ = os.RemoveAll(out)
	if err := os.MkdirAll(out, 0o755); err != nil {
		return
	}
	logs, _ := filepath.Glob(filepath.Join(dir, "*.log"))
	for _, l := range logs {
		if b, err := os.ReadFile(l); err == nil {
			_ = os.WriteFile(filepath.Join(out, filepath.Base(l)), b, 0o644)
		}
	}
	logf("exporter and applier logs in %s", out)
}

func writeConfig(path, s string) {
	if err := os.WriteFile(path, []byte(s), 0o600); err != nil {
		panic(fatal{err.Error()})
	}
}

// copyFloor copies the round's small and large objects from zone-a into
// fresh buckets on zone-b (their metadata put there first, as metadata
// sync would), with rgwsync stopped.
func copyFloor(ctx context.Context, o options, z *zones, r *results, u user, p string, small []string, large string) error {
	src, dstA, dstB := u.on(z.lab.ZoneA), u.on(z.lab.ZoneA), u.on(z.lab.ZoneB)
	var pairs [][2]string
	var fresh []string
	for _, b := range small {
		pairs = append(pairs, [2]string{b, b + "-cf"})
		fresh = append(fresh, b+"-cf")
	}
	fresh = append(fresh, large+"-cf")
	if err := createBuckets(ctx, func(int) *s3.Client { return dstA }, fresh); err != nil {
		return err
	}
	for _, b := range fresh {
		if err := copyBucketMetadata(ctx, z.src, z.dst, b); err != nil {
			return err
		}
	}
	if err := copyUserMetadata(ctx, z.src, z.dst, u.uid); err != nil {
		return err
	}
	t := time.Now()
	n, err := copyFloorSmall(ctx, src, dstB, pairs, o.copyWorkers)
	if err != nil {
		return err
	}
	el := time.Since(t)
	r.add("small/copy floor", float64(n)/el.Seconds())
	logf("copy floor: %d small objects in %.2f s (%.0f objects/s)", n, el.Seconds(), float64(n)/el.Seconds())
	for _, pr := range pairs {
		a, err := list(ctx, src, pr[0])
		if err != nil {
			return err
		}
		b, err := list(ctx, dstB, pr[1])
		if err != nil {
			return err
		}
		if len(a) != len(b) {
			return fmt.Errorf("copy floor: %s has %d objects, its copy %d", pr[0], len(a), len(b))
		}
	}
	objs, err := list(ctx, src, large)
	if err != nil {
		return err
	}
	t = time.Now()
	bytes, err := copyFloorLarge(ctx, src, dstB, large, large+"-cf", objs, o.partSize, o.copyWorkers)
	if err != nil {
		return err
	}
	el = time.Since(t)
	mibs := float64(bytes) / (1 << 20) / el.Seconds()
	r.add("large/copy floor", mibs)
	logf("copy floor: %d MiB of large objects in %.2f s (%.0f MiB/s)", bytes>>20, el.Seconds(), mibs)
	got, err := list(ctx, dstB, large+"-cf")
	if err != nil {
		return err
	}
	for k, o := range objs {
		if got[k].Size != o.Size || got[k].ETag != o.ETag {
			return fmt.Errorf("copy floor: %s/%s: copy size %d ETag %s, source %d %s", large, k, got[k].Size, got[k].ETag, o.Size, o.ETag)
		}
	}
	return nil
}

func runBuiltinLab(ctx context.Context, o options, r *results) error {
	lab, err := o.labB.boot()
	if err != nil {
		return err
	}
	z, err := newZones(lab)
	if err != nil {
		return err
	}
	s := &builtin{lab: lab}
	if err := warmUp(ctx, z, s); err != nil {
		return err
	}
	for round := 1; round <= o.rounds; round++ {
		p := fmt.Sprintf("r%d%s", round, shortHex(3))
		u, _, err := smallObjects(ctx, o, z, s, r, p, "small")
		if err != nil {
			return err
		}
		if _, err := largeObjects(ctx, o, z, s, r, u, p, "large", o.largeCount, o.largeSize); err != nil {
			return err
		}
		if err := metadata(ctx, o, z, s, r, p, "metadata"); err != nil {
			return err
		}
		if o.lagFor > 0 {
			if err := s.settle(ctx); err != nil {
				return err
			}
			if err := lagRun(ctx, o, z, s, r, u, p); err != nil {
				return err
			}
		}
	}
	return nil
}
