// Command demo is `make demo`: against a running lab (deploy/ceph-lab, its
// endpoints in RGWSYNC_LAB_* as set by with-lab.sh) it creates metadata on
// zone-a, starts rgwsync-exporter and rgwsync-applier, keeps changing zone-a
// (users and tenant users created, modified, suspended, deleted; buckets
// created and removed), prints the exporter's progress while the applier
// catches up, and verifies that zone-b's metadata equals zone-a's.
package main

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/aws/aws-sdk-go-v2/service/s3/types"

	v1 "github.com/rgwsync/rgwsync/gen/rgwsync/v1"
	"github.com/rgwsync/rgwsync/internal/rgwlog"
	"github.com/rgwsync/rgwsync/internal/testkit/labtest"
	"github.com/rgwsync/rgwsync/internal/testkit/synctest"
	"github.com/rgwsync/rgwsync/internal/verify"
)

func main() {
	d := &demoTB{dir: filepath.Join(labtest.Root(), ".tmp", "demo")}
	code := 0
	func() {
		defer func() {
			if r := recover(); r != nil {
				if _, ok := r.(fatal); !ok {
					panic(r)
				}
				code = 1
			}
		}()
		run(d)
	}()
	d.cleanup()
	if code != 0 {
		fmt.Println("\nDEMO FAILED — service logs are in", d.dir)
	}
	os.Exit(code)
}

func run(d *demoTB) {
	_ = os.RemoveAll(d.dir)
	if err := os.MkdirAll(d.dir, 0o755); err != nil {
		d.Fatal(err)
	}
	step("building rgwsync-exporter and rgwsync-applier")
	expBin, _ := synctest.Binaries(d)
	defer synctest.RemoveBinaries()
	e := synctest.NewEnv(d)
	e.Dest = "zone-b"
	e.LeaseLength = 15 * time.Second
	e.TLS = true
	step("generating a CA and certificates (internal/certs, as rgwsync-certs does) for mTLS on the link")
	certs := e.Certs()
	opCert, opKey := certs.Pair(synctest.OperatorIdentity)
	fmt.Printf("  CA %s; exporter %q, applier %q, operator %q\n", certs.CA,
		synctest.ExporterIdentity, synctest.ApplierIdentity, synctest.OperatorIdentity)
	fmt.Printf("  source zone-a %s, destination zone-b %s, logs and bounds in %s\n", e.Lab.ZoneA, e.Lab.ZoneB, e.Dir)

	step("before the services start: users and buckets on zone-a (they arrive by full sync)")
	owner := e.User("demo-owner", "Demo Owner")
	for i := range 10 {
		e.Bucket(owner, fmt.Sprintf("demo-pre-%02d", i))
	}
	for i := range 5 {
		e.User(fmt.Sprintf("demo-pre-user-%d", i), fmt.Sprintf("Pre-existing user %d", i))
	}
	for i := range 50 {
		synctest.PutObject(d, owner, "demo-pre-00", fmt.Sprintf("photos/%03d.jpg", i), synctest.RandomBytes(4096), nil)
	}

	step("starting rgwsync-exporter (beside zone-a) and rgwsync-applier (beside zone-b)")
	exp := e.StartExporter("")
	app := e.StartApplier("demo-applier")
	fmt.Printf("  exporter gRPC %s, applier status gRPC %s\n", exp.Addr, app.Addr)
	// The demo's binaries are temporary: point at the ones make build left.
	statusBin := expBin
	if p := filepath.Join(labtest.Root(), "bin", "rgwsync-exporter"); labtest.FileExists(p) {
		statusBin = p
	}
	fmt.Printf("  try (while the demo runs): %s status -addr %s -cacert %s -cert %s -key %s -server-name %s\n",
		statusBin, exp.Addr, certs.CA, opCert, opKey, synctest.ExporterIdentity)

	stopProgress := progress(e)
	changeMetadata(d, e, owner)
	writeObjects(d, e, owner)
	verifyEqual(d, e, stopProgress)

	step("the status command, over mTLS as the operator")
	out, err := exec.Command(expBin, "status", "-addr", exp.Addr, "-cacert", certs.CA, "-cert", opCert, "-key", opKey,
		"-server-name", synctest.ExporterIdentity, "-interval", "0").CombinedOutput()
	fmt.Print(indent(string(out)))
	if err != nil {
		d.Fatalf("status command: %v", err)
	}

	step("stopping the services (SIGTERM: graceful, leases released)")
	if err := app.Stop(); err != nil {
		d.Fatal(err)
	}
	if err := exp.Stop(); err != nil {
		d.Fatal(err)
	}
}

// changeMetadata changes users and buckets on zone-a while the applier
// catches up.
func changeMetadata(d *demoTB, e *synctest.Env, owner *s3.Client) {
	step("changing zone-a while the applier catches up")
	var wg sync.WaitGroup
	wg.Add(2)
	go func() {
		defer wg.Done()
		for i := range 60 {
			e.Bucket(owner, fmt.Sprintf("demo-live-%02d", i))
		}
		for i := 5; i < 10; i++ { // the empty ones (demo-pre-00 holds objects)
			e.RemoveBucket(owner, fmt.Sprintf("demo-pre-%02d", i))
		}
	}()
	go func() {
		defer wg.Done()
		for i := range 15 {
			e.User(fmt.Sprintf("demo-user-%02d", i), fmt.Sprintf("Live user %d", i))
		}
		tenant := e.User("acme$demo-tenant-user", "Tenant user")
		e.Bucket(tenant, "demo-tenant-bucket")
		for i := range 5 {
			e.Lab.Admin(d, "zone-a", "user", "modify", fmt.Sprintf("--uid=demo-user-%02d", i), "--display-name=Modified live user", "--max-buckets=42")
		}
		e.Lab.Admin(d, "zone-a", "user", "suspend", "--uid=demo-user-05")
		for i := 10; i < 13; i++ {
			e.Lab.Admin(d, "zone-a", "user", "rm", fmt.Sprintf("--uid=demo-user-%02d", i))
		}
		e.Lab.Admin(d, "zone-a", "user", "rm", "--uid=demo-pre-user-0")
	}()
	wg.Wait()
}

// writeObjects writes every kind of object the demo checks on zone-a.
func writeObjects(d *demoTB, e *synctest.Env, owner *s3.Client) {
	step("writing objects on zone-a: small, large (chunked), multipart, overwritten, deleted, versioned")
	e.Bucket(owner, "demo-objects")
	for i := range 200 {
		synctest.PutObject(d, owner, "demo-objects", fmt.Sprintf("small/%03d", i), synctest.RandomBytes(4096), nil)
	}
	synctest.PutObject(d, owner, "demo-objects", "reports/q3.html", []byte("<h1>Q3</h1>"), func(in *s3.PutObjectInput) {
		in.ContentType, in.CacheControl = aws.String("text/html"), aws.String("max-age=300")
		in.Metadata = map[string]string{"department": "finance"}
		in.Tagging = aws.String("confidential=yes")
	})
	synctest.PutObject(d, owner, "demo-objects", "large/20MiB.bin", synctest.RandomBytes(20<<20), nil)
	synctest.Multipart(d, owner, "demo-objects", "large/multipart-4x5MiB.bin", 5<<20, 5<<20, 5<<20, 5<<20)
	synctest.PutObject(d, owner, "demo-objects", "small/000", []byte("overwritten"), nil)
	ctx0 := context.Background()
	for i := 190; i < 200; i++ {
		if _, err := owner.DeleteObject(ctx0, &s3.DeleteObjectInput{Bucket: aws.String("demo-objects"), Key: aws.String(fmt.Sprintf("small/%03d", i))}); err != nil {
			d.Fatal(err)
		}
	}
	e.Bucket(owner, "demo-versions")
	if _, err := owner.PutBucketVersioning(ctx0, &s3.PutBucketVersioningInput{Bucket: aws.String("demo-versions"),
		VersioningConfiguration: &types.VersioningConfiguration{Status: types.BucketVersioningStatusEnabled}}); err != nil {
		d.Fatal(err)
	}
	for v := range 3 {
		synctest.PutObject(d, owner, "demo-versions", "contract.pdf", []byte(fmt.Sprintf("draft %d", v+1)), nil)
	}
	synctest.PutObject(d, owner, "demo-versions", "withdrawn.pdf", []byte("soon hidden"), nil)
	if _, err := owner.DeleteObject(ctx0, &s3.DeleteObjectInput{Bucket: aws.String("demo-versions"), Key: aws.String("withdrawn.pdf")}); err != nil {
		d.Fatal(err)
	}

}

// verifyEqual waits until zone-b equals zone-a, then says what it compared.
func verifyEqual(d *demoTB, e *synctest.Env, stopProgress func()) {
	step("waiting until zone-b equals zone-a: metadata, then every object (body digest, headers, tags, versions)")
	start := time.Now()
	e.WaitMetadataEqual(3*time.Minute, nil)
	e.WaitObjectsEqual(3*time.Minute, "demo-owner", "demo-pre-00", "demo-objects", "demo-versions")
	stopProgress()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	counts := map[string]int{}
	for _, sec := range rgwlog.DefaultSections {
		keys, err := verify.Keys(ctx, e.Dst, sec)
		if err != nil {
			d.Fatal(err)
		}
		counts[sec] = len(keys)
	}
	st, err := synctest.StatusOf(ctx, e.ExporterAddr, e.Dest, e.DialOption(e.ExporterAddr))
	if err != nil {
		d.Fatal(err)
	}
	ds := st.GetDestinations()[0]
	fmt.Printf("\nOK: zone-b equals zone-a (every user, bucket and bucket instance compared field by field, and every object and version\n"+
		"    of demo-pre-00, demo-objects and demo-versions by body digest, headers, tags and version ids; %.1fs after the last change)\n",
		time.Since(start).Seconds())
	fmt.Printf("    %d users, %d buckets, %d bucket instances on zone-b; %d entries applied; %d shards caught up, %d behind; %d retries\n",
		counts["user"], counts["bucket"], counts["bucket.instance"], ds.GetEntriesApplied(), ds.GetShardsCaughtUp(), ds.GetShardsBehind(), ds.GetRetries())

}

// progress prints the exporter's status every second until stopped.
func progress(e *synctest.Env) func() {
	done := make(chan struct{})
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		t := time.NewTicker(time.Second)
		defer t.Stop()
		for {
			select {
			case <-done:
				return
			case <-t.C:
			}
			ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
			st, err := synctest.StatusOf(ctx, e.ExporterAddr, e.Dest, e.DialOption(e.ExporterAddr))
			cancel()
			if err != nil || len(st.GetDestinations()) == 0 {
				continue
			}
			ds := st.GetDestinations()[0]
			lag := "0s"
			if o := ds.GetOldestUnapplied(); o != nil {
				lag = time.Since(o.AsTime()).Round(time.Millisecond).String()
			}
			full := ""
			var mdCaught, mdAll, dataCaught, dataAll int
			for _, s := range ds.GetShards() {
				switch s.GetShard().GetLogType() {
				case v1.LogType_LOG_TYPE_METADATA_FULL:
					full = strings.ToLower(strings.TrimPrefix(s.GetPhase().String(), "SHARD_PHASE_"))
				case v1.LogType_LOG_TYPE_METADATA, v1.LogType_LOG_TYPE_DATA:
					caught := s.GetPhase() == v1.ShardPhase_SHARD_PHASE_CAUGHT_UP && s.GetRetries() == 0
					if s.GetShard().GetLogType() == v1.LogType_LOG_TYPE_METADATA {
						mdAll++
						if caught {
							mdCaught++
						}
					} else {
						dataAll++
						if caught {
							dataCaught++
						}
					}
				}
			}
			fmt.Printf("  progress: md full sync %-9s | md shards %2d/%d caught up | data shards %3d/%d | applied %5d entries+objects, %s | retries %d | oldest unapplied %s\n",
				full, mdCaught, mdAll, dataCaught, dataAll, ds.GetEntriesApplied(), humanBytes(ds.GetBytesApplied()), ds.GetRetries(), lag)
		}
	}()
	return func() { close(done); wg.Wait() }
}

func humanBytes(b uint64) string {
	switch {
	case b >= 1<<20:
		return fmt.Sprintf("%.1f MiB", float64(b)/(1<<20))
	case b >= 1<<10:
		return fmt.Sprintf("%.1f KiB", float64(b)/(1<<10))
	}
	return fmt.Sprintf("%d B", b)
}

func step(s string) { fmt.Printf("\n==> %s\n", s) }

func indent(s string) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	return "    " + strings.Join(lines, "\n    ") + "\n"
}

// demoTB runs the test harness outside `go test`.
type demoTB struct {
	dir      string
	n        int
	cleanups []func()
	failed   bool
}

type fatal struct{}

func (d *demoTB) Helper()                 {}
func (d *demoTB) Logf(f string, a ...any) { fmt.Printf("  "+f+"\n", a...) }
func (d *demoTB) Fatal(a ...any) {
	d.failed = true
	fmt.Println(append([]any{"ERROR:"}, a...)...)
	panic(fatal{})
}
func (d *demoTB) Fatalf(f string, a ...any) {
	d.failed = true
	fmt.Printf("ERROR: "+f+"\n", a...)
	panic(fatal{})
}
func (d *demoTB) Cleanup(f func()) { d.cleanups = append(d.cleanups, f) }
func (d *demoTB) Failed() bool     { return d.failed }
func (d *demoTB) TempDir() string {
	d.n++
	p := filepath.Join(d.dir, fmt.Sprint(d.n))
	if err := os.MkdirAll(p, 0o755); err != nil {
		panic(err)
	}
	return p
}

func (d *demoTB) cleanup() {
	for i := len(d.cleanups) - 1; i >= 0; i-- {
		d.cleanups[i]()
	}
}
