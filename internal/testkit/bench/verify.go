package main

import (
	"bytes"
	"context"
	"fmt"
	"os/exec"
	"regexp"
	"strconv"
	"sync/atomic"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"
)

// verifyRun (issue #14): a bucket of o.verifyObjects small objects written
// on zone-a and synced by rgwsync; then, with the services restarted (fresh
// memory peaks), `rgwsync-applier verify -bucket B` compares the two zones,
// every version's attributes included. Recorded: versions compared per
// second; the yardstick, a plain versioned listing of the bucket on both
// zones (what any comparison must read) in versions per second; the peak
// RSS of the verify process and of the exporter, which serves the source's
// side of it.
func verifyRun(ctx context.Context, o options, z *zones, d *deployment, r *results, p string) error {
	u, b := newUser(p+"-vf"), p+"-verify"
	if err := d.pause(ctx); err != nil {
		return err
	}
	tw := time.Now()
	if err := createUsers(ctx, z.lab.ZoneA, []user{u}); err != nil {
		return err
	}
	src, dst := u.on(z.lab.ZoneA), u.on(z.lab.ZoneB)
	if err := createBuckets(ctx, func(int) *s3.Client { return src }, []string{b}); err != nil {
		return err
	}
	if err := putSmall(ctx, src, []string{b}, o.verifyObjects, 64); err != nil {
		return err
	}
	logf("verify: %d objects written on zone-a in %.1f s", o.verifyObjects, time.Since(tw).Seconds())
	want, err := sourceState(ctx, src, []string{b})
	if err != nil {
		return err
	}
	ts := time.Now()
	if err := d.resume(ctx); err != nil {
		return err
	}
	if err := waitListed(ctx, dst, want, 30*time.Minute); err != nil {
		return fmt.Errorf("verify bucket: %w", err)
	}
	logf("verify: %d objects synced by rgwsync in %.1f s (%.0f objects/s)", len(want[b]), time.Since(ts).Seconds(),
		float64(len(want[b]))/time.Since(ts).Seconds())
	want = nil
	// Fresh processes: their peaks are the verify's.
	if err := d.pause(ctx); err != nil {
		return err
	}
	if err := d.resume(ctx); err != nil {
		return err
	}
	floor, err := listingFloor(ctx, src, dst, b)
	if err != nil {
		return err
	}
	cmd := exec.CommandContext(ctx, d.appBin, "verify", "-config", d.appCfg, "-bucket", b, "-quiet")
	var ob bytes.Buffer
	cmd.Stdout, cmd.Stderr = &ob, &ob
	t := time.Now()
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("verify: %w", err)
	}
	hwm := sampleHWM(cmd.Process.Pid)
	err = cmd.Wait()
	el := time.Since(t)
	verifyPeak := hwm()
	out := ob.Bytes()
	if err != nil {
		return fmt.Errorf("verify of %s (the zones should be equal): %w\n%s", b, err, out)
	}
	m := regexp.MustCompile(`(\d+) versions compared`).FindSubmatch(out)
	if m == nil {
		return fmt.Errorf("verify: no summary in its output:\n%s", out)
	}
	n, _ := strconv.Atoi(string(m[1]))
	expHWM, err := peakRSS(d.exp.PID())
	if err != nil {
		return err
	}
	r.add("verify/rgwsync", float64(n)/el.Seconds())
	r.add("verify/copy floor", floor)
	r.add("rss/verify/verify", float64(verifyPeak))
	r.add("rss/verify/exporter", float64(expHWM))
	logf("verify: %d versions compared in %.1f s (%.0f/s; listing both zones alone: %.0f/s); peak RSS verify %.1f MiB, exporter %.1f MiB",
		n, el.Seconds(), float64(n)/el.Seconds(), floor, float64(verifyPeak)/(1<<20), float64(expHWM)/(1<<20))
	return nil
}

// listingFloor lists every version of bucket on both zones, one after the
// other, as S3 clients: versions per second.
func listingFloor(ctx context.Context, src, dst *s3.Client, bucket string) (float64, error) {
	t := time.Now()
	n := 0
	for _, c := range []*s3.Client{src, dst} {
		in := &s3.ListObjectVersionsInput{Bucket: aws.String(bucket), MaxKeys: aws.Int32(1000)}
		for {
			page, err := c.ListObjectVersions(ctx, in)
			if err != nil {
				return 0, fmt.Errorf("list the versions of %s: %w", bucket, err)
			}
			n += len(page.Versions)
			if !aws.ToBool(page.IsTruncated) {
				break
			}
			in.KeyMarker, in.VersionIdMarker = page.NextKeyMarker, page.NextVersionIdMarker
		}
	}
	return float64(n/2) / time.Since(t).Seconds(), nil
}

// sampleHWM reads pid's VmHWM every 100 ms until the returned function is
// called (once the process has ended), which gives the last reading: the
// process's own peak, up to its last 100 ms. Not getrusage: a child's
// ru_maxrss also counts the high-water mark of the memory it was started
// from (Go starts children with CLONE_VM, and exec keeps the old mm's peak
// in the signal struct's maxrss), i.e. this benchmark's own peak — 70.7 MiB
// "for verify" in a 100,000-object run while verify itself stayed near
// 25 MiB (/proc/PID/status sampled).
func sampleHWM(pid int) func() int64 {
	var peak atomic.Int64
	done := make(chan struct{})
	stopped := make(chan struct{})
	go func() {
		defer close(stopped)
		for {
			if v, err := peakRSS(pid); err == nil {
				peak.Store(max(peak.Load(), v))
			}
			select {
			case <-done:
				return
			case <-time.After(100 * time.Millisecond):
			}
		}
	}()
	return func() int64 {
		close(done)
		<-stopped
		return peak.Load()
	}
}
