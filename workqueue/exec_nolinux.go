//go:build !linux

package workqueue

import "syscall"

// dieWithParent does nothing where there is no parent-death signal (PR_SET_PDEATHSIG is Linux's):
// a command outlives a worker killed with SIGKILL (see ExecWorker).
func dieWithParent(*syscall.SysProcAttr) bool { return false }
