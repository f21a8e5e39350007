//go:build linux

package sidecar

import "syscall"

// dieWithSupervisor is true: a child is started with a parent-death signal (withParentDeath), and
// the thread that starts it must stay while it runs (see supervise).
const dieWithSupervisor = true

// withParentDeath returns a (nil: new SysProcAttr) with Pdeathsig SIGKILL: the kernel kills the
// child when the thread that started it exits (prctl PR_SET_PDEATHSIG), which, kept locked to its
// goroutine, exits only with the Supervisor's process: SIGKILLed, crashed, OOM-killed.
func withParentDeath(a *syscall.SysProcAttr) *syscall.SysProcAttr {
	if a == nil {
		a = &syscall.SysProcAttr{}
	}
	a.Pdeathsig = syscall.SIGKILL
	return a
}
