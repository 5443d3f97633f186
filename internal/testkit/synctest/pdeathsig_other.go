//go:build !linux

package synctest

import "syscall"

func childAttrs() *syscall.SysProcAttr { return nil }
