//go:build linux

package workqueue

import "syscall"

// dieWithParent asks the kernel to SIGKILL the command when the thread that starts it exits
// (prctl PR_SET_PDEATHSIG, through exec.Cmd's SysProcAttr), and reports that it did: the caller
// must then keep that thread, locked to its goroutine, until the command has been waited for.
func dieWithParent(a *syscall.SysProcAttr) bool {
	a.Pdeathsig = syscall.SIGKILL
	return true
}
