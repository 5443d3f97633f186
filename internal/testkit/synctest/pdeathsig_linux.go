package synctest

import "syscall"

// childAttrs makes a started service die with the test process: a test
// binary killed abruptly (a timeout, a closed pipe) must not leave
// exporters and appliers running against the lab.
func childAttrs() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
}
