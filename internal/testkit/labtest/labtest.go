// Package labtest gives integration tests a real two-zone Ceph lab
// (deploy/ceph-lab). When RGWSYNC_LAB_ZONE_A is set (make test, .ci/run) the
// tests use that running lab; otherwise the first test that asks boots a
// private lab on free ports and Stop (called from TestMain) tears it down.
package labtest

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/aws/retry"
	"github.com/aws/aws-sdk-go-v2/service/s3"
)

// TB is the part of testing.TB the lab and the harness use; the demo
// implements it too, so it runs the same code outside `go test`.
type TB interface {
	Helper()
	Fatal(args ...any)
	Fatalf(format string, args ...any)
	Logf(format string, args ...any)
	Cleanup(func())
	TempDir() string
	Failed() bool
}

var _ TB = testing.TB(nil)

// Lab is a running two-zone lab.
type Lab struct {
	Dir       string // $LAB of start.sh (ceph.conf, logs)
	ZoneA     string // http://127.0.0.1:PORT, the source (master)
	ZoneB     string // the destination
	AccessKey string // system user, both zones
	SecretKey string
	owned     bool
}

var (
	once    sync.Once
	shared  *Lab
	bootErr error
)

// Get returns the lab, booting a private one if none is configured. It fails
// the test (never skips it) when no lab can be had: integration tests must
// run against real gateways.
func Get(t TB) *Lab {
	t.Helper()
	once.Do(func() { shared, bootErr = fromEnvOrBoot() })
	if bootErr != nil {
		t.Fatalf("ceph lab: %v", bootErr)
	}
	return shared
}

// Release is the Ceph release the lab runs ("pacific", "reef", "tentacle"),
// as start.sh recorded it in $LAB/release (a lab without it: pacific).
func (l *Lab) Release() string {
	b, err := os.ReadFile(filepath.Join(l.Dir, "release"))
	if err != nil {
		return "pacific"
	}
	return strings.TrimSpace(string(b))
}

// Stop tears down a lab this process booted (a configured one is left alone).
func Stop() {
	if shared == nil || !shared.owned {
		return
	}
	cmd := exec.Command(filepath.Join(Root(), "deploy", "ceph-lab", "stop.sh"), "--wipe")
	cmd.Env = append(os.Environ(), "LAB="+shared.Dir)
	_ = cmd.Run()
}

// Root is the repository's top directory.
func Root() string {
	_, file, _, _ := runtime.Caller(0)
	return filepath.Clean(filepath.Join(filepath.Dir(file), "..", "..", ".."))
}

func fromEnvOrBoot() (*Lab, error) {
	l := &Lab{
		Dir:       os.Getenv("RGWSYNC_LAB_DIR"),
		ZoneA:     os.Getenv("RGWSYNC_LAB_ZONE_A"),
		ZoneB:     os.Getenv("RGWSYNC_LAB_ZONE_B"),
		AccessKey: envOr("RGWSYNC_LAB_ACCESS_KEY", "SYSTEMACCESSKEY0001"),
		SecretKey: envOr("RGWSYNC_LAB_SECRET_KEY", "SystemSecretKey0000000000000000000000001"),
	}
	if l.ZoneA != "" && l.ZoneB != "" {
		if l.Dir == "" {
			l.Dir = "/tmp/ceph-lab"
		}
		return l, nil
	}
	ports, err := freePorts(3)
	if err != nil {
		return nil, err
	}
	l.Dir = filepath.Join(os.TempDir(), "rgwsync-lab-"+RandomName(""))
	l.owned = true
	cmd := exec.Command(filepath.Join(Root(), "deploy", "ceph-lab", "start.sh"))
	cmd.Env = append(os.Environ(),
		"LAB="+l.Dir,
		fmt.Sprintf("MON_PORT=%d", ports[0]),
		fmt.Sprintf("RGW_A_PORT=%d", ports[1]),
		fmt.Sprintf("RGW_B_PORT=%d", ports[2]),
		"SYS_AK="+l.AccessKey, "SYS_SK="+l.SecretKey)
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Run(); err != nil {
		return nil, fmt.Errorf("deploy/ceph-lab/start.sh: %v\n%s", err, out.String())
	}
	l.ZoneA = fmt.Sprintf("http://127.0.0.1:%d", ports[1])
	l.ZoneB = fmt.Sprintf("http://127.0.0.1:%d", ports[2])
	return l, nil
}

// Admin runs radosgw-admin against the lab (zone "zone-a" or "zone-b").
func (l *Lab) Admin(t TB, zone string, args ...string) string {
	t.Helper()
	full := append([]string{"-c", filepath.Join(l.Dir, "ceph.conf"), "-n", "client.admin", "--rgw-zone=" + zone}, args...)
	// stdout only: radosgw-admin prints warnings (e.g. about its admin
	// socket) on stderr, which would corrupt the JSON callers parse.
	var stderr bytes.Buffer
	cmd := exec.Command(l.RadosgwAdmin(), full...)
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("radosgw-admin %s: %v\n%s%s", strings.Join(args, " "), err, out, stderr.String())
	}
	return string(out)
}

// RadosgwAdmin is the lab's radosgw-admin: the one of its release
// ($LAB/bin/radosgw-admin, written by start.sh for a release run in a
// chroot), else the host's.
func (l *Lab) RadosgwAdmin() string {
	if p := filepath.Join(l.Dir, "bin", "radosgw-admin"); FileExists(p) {
		return p
	}
	return "radosgw-admin"
}

// FileExists: p is a file (not a directory).
func FileExists(p string) bool {
	st, err := os.Stat(p)
	return err == nil && !st.IsDir()
}

// RandomName returns prefix followed by 8 random hex digits (lower case, so
// it is valid in bucket names).
func RandomName(prefix string) string {
	var b [4]byte
	_, _ = rand.Read(b[:])
	return prefix + hex.EncodeToString(b[:])
}

func envOr(k, def string) string {
	if v := os.Getenv(k); v != "" {
		return v
	}
	return def
}

// freePorts finds n ports that are free now; start.sh refuses busy ones, so
// a lost race fails loudly rather than silently sharing a lab.
func freePorts(n int) ([]int, error) {
	var ls []net.Listener
	defer func() {
		for _, l := range ls {
			_ = l.Close()
		}
	}()
	var ports []int
	for range n {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return nil, fmt.Errorf("find a free port: %w", err)
		}
		ls = append(ls, l)
		ports = append(ports, l.Addr().(*net.TCPAddr).Port)
	}
	return ports, nil
}

// S3 returns an S3 client for the keys ak, sk on endpoint (path style, no
// checksum extensions the gateway does not know). The tests' own writes and
// reads: it retries more, and waits longer between tries, than the SDK's
// default 3 tries within ~100 ms. Make test's Pacific and Tentacle labs
// side by side on 2 cores once failed TestDataSyncObjects in its setup:
// zone-a answered a DeleteObjects 200, and each of the 3 tries ended within
// 80 ms with "use of closed network connection" while reading the body
// (Go's transport closes the connection when the request's write fails
// after the answer began: aws-sdk-go-v2 issues #1825, #2737); zone-a's log
// shows the three POSTs answered together, 2 of them cut after 112 bytes.
func S3(endpoint, ak, sk string) *s3.Client {
	return s3.New(s3.Options{
		Retryer: retry.NewStandard(func(o *retry.StandardOptions) {
			o.MaxAttempts = 8
			o.MaxBackoff = 2 * time.Second
		}),
		Region:       "us-east-1",
		BaseEndpoint: aws.String(endpoint),
		UsePathStyle: true,
		Credentials: aws.CredentialsProviderFunc(func(context.Context) (aws.Credentials, error) {
			return aws.Credentials{AccessKeyID: ak, SecretAccessKey: sk}, nil
		}),
		RequestChecksumCalculation: aws.RequestChecksumCalculationWhenRequired,
		ResponseChecksumValidation: aws.ResponseChecksumValidationWhenRequired,
	})
}
