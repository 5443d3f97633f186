package main

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/rgwsync/rgwsync/internal/testkit/labtest"
)

// labSpec is one lab booted by deploy/ceph-lab/start.sh.
type labSpec struct {
	Name          string // for messages
	Dir           string
	Mon, A, B     int
	BuiltinSync   bool // RGW_B_SYNC_THREAD=true
	MemstoreBytes int64
	ObjectStore   string // memstore | bluestore (start.sh's OBJECTSTORE)
}

const (
	sysAK = "SYSTEMACCESSKEY0001"
	sysSK = "SystemSecretKey0000000000000000000000001"
)

func script(name string) string { return filepath.Join(labtest.Root(), "deploy", "ceph-lab", name) }

func (s labSpec) env() []string {
	return append(os.Environ(),
		"LAB="+s.Dir,
		fmt.Sprintf("MON_PORT=%d", s.Mon),
		fmt.Sprintf("RGW_A_PORT=%d", s.A),
		fmt.Sprintf("RGW_B_PORT=%d", s.B),
		fmt.Sprintf("RGW_B_SYNC_THREAD=%t", s.BuiltinSync),
		fmt.Sprintf("MEMSTORE_BYTES=%d", s.MemstoreBytes),
		"OBJECTSTORE="+s.ObjectStore,
		"SYS_AK="+sysAK, "SYS_SK="+sysSK)
}

// errLabInUse: boot found another run's lab in its place (which must
// then be left running, not stopped by this run's failure).
var errLabInUse = errors.New("lab in use")

// boot starts the lab; it refuses a LAB that a live lab still holds (as
// with-lab.sh does), since start.sh would stop it.
func (s labSpec) boot() (*labtest.Lab, error) {
	if live, who := s.live(); live {
		return nil, fmt.Errorf("%s is in use (%s still runs): choose another -lab-dir/ports or stop it with LAB=%s %s --wipe: %w",
			s.Dir, who, s.Dir, script("stop.sh"), errLabInUse)
	}
	logf("booting %s lab in %s (mon :%d, zone-a :%d, zone-b :%d, built-in sync %t, %s, memstore size %d MiB)",
		s.Name, s.Dir, s.Mon, s.A, s.B, s.BuiltinSync, s.ObjectStore, s.MemstoreBytes>>20)
	cmd := exec.Command(script("start.sh"))
	cmd.Env = s.env()
	out, err := cmd.CombinedOutput()
	if err != nil {
		s.stop(true)
		return nil, fmt.Errorf("start.sh (%s lab): %v\n%s", s.Name, err, out)
	}
	return &labtest.Lab{Dir: s.Dir, ZoneA: fmt.Sprintf("http://127.0.0.1:%d", s.A),
		ZoneB: fmt.Sprintf("http://127.0.0.1:%d", s.B), AccessKey: sysAK, SecretKey: sysSK}, nil
}

// stop runs stop.sh --wipe (it signals the lab's recorded PIDs only); on
// failure the lab's logs are first copied to .tmp/bench-lab-logs/NAME.
func (s labSpec) stop(keepLogs bool) {
	if keepLogs {
		out := filepath.Join(labtest.Root(), ".tmp", "bench-lab-logs", s.Name)
		_ = os.RemoveAll(out)
		if err := os.MkdirAll(out, 0o755); err == nil {
			_ = exec.Command("cp", "-a", filepath.Join(s.Dir, "log")+"/.", out+"/").Run()
			logf("lab logs copied to %s", out)
		}
	}
	cmd := exec.Command(script("stop.sh"), "--wipe")
	cmd.Env = s.env()
	if out, err := cmd.CombinedOutput(); err != nil {
		logf("stop.sh (%s lab): %v\n%s", s.Name, err, out)
	}
}

// live reports whether a process recorded in Dir/pids still runs.
func (s labSpec) live() (bool, string) {
	f, err := os.Open(filepath.Join(s.Dir, "pids"))
	if err != nil {
		return false, ""
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		fs := strings.Fields(sc.Text())
		if len(fs) != 3 {
			continue
		}
		pid, _ := strconv.Atoi(fs[1])
		if st, err := startTime(pid); err == nil && st == fs[2] {
			return true, fmt.Sprintf("%s, pid %d", fs[0], pid)
		}
	}
	return false, ""
}

func startTime(pid int) (string, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return "", err
	}
	s := string(b)
	i := strings.LastIndex(s, ") ")
	if i < 0 {
		return "", errors.New("bad stat")
	}
	f := strings.Fields(s[i+2:])
	if len(f) < 20 {
		return "", errors.New("short stat")
	}
	return f[19], nil
}

// daemonPID is the recorded PID of a lab daemon ("rgw.b"), checked against
// its recorded start time.
func daemonPID(dir, name string) (int, error) {
	b, err := os.ReadFile(filepath.Join(dir, "pids"))
	if err != nil {
		return 0, err
	}
	for _, l := range strings.Split(string(b), "\n") {
		fs := strings.Fields(l)
		if len(fs) == 3 && fs[0] == name {
			pid, _ := strconv.Atoi(fs[1])
			if st, err := startTime(pid); err == nil && st == fs[2] {
				return pid, nil
			}
			return 0, fmt.Errorf("%s (pid %s) no longer runs", name, fs[1])
		}
	}
	return 0, fmt.Errorf("%s not in %s/pids", name, dir)
}

// signalDaemon sends sig to a daemon of the lab we booted (SIGSTOP/SIGCONT
// of zone-b's gateway make the built-in sync catch up like a restarted
// replicator, without the restart's stale leases).
func signalDaemon(dir, name string, sig syscall.Signal) error {
	pid, err := daemonPID(dir, name)
	if err != nil {
		return err
	}
	return syscall.Kill(pid, sig)
}

// builtinSyncStatus is `radosgw-admin sync status` on zone-b.
func builtinSyncStatus(ctx context.Context, lab *labtest.Lab) (string, error) {
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, (&labtest.Lab{Dir: lab.Dir}).RadosgwAdmin(), "-c", filepath.Join(lab.Dir, "ceph.conf"), "-n", "client.admin",
		"--rgw-zone=zone-b", "sync", "status")
	out, err := cmd.Output()
	return string(out), err
}

// peakRSS is VmHWM of pid in bytes.
func peakRSS(pid int) (int64, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0, err
	}
	for _, l := range strings.Split(string(b), "\n") {
		if rest, ok := strings.CutPrefix(l, "VmHWM:"); ok {
			f := strings.Fields(rest)
			if len(f) >= 1 {
				kb, err := strconv.ParseInt(f[0], 10, 64)
				return kb << 10, err
			}
		}
	}
	return 0, errors.New("no VmHWM")
}
