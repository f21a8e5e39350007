//go:build linux

package pdeathsig

import "syscall"

// Supported is true: this platform has a parent-death signal.
const Supported = true

// Set returns a (nil: a new SysProcAttr) with the parent-death signal SIGKILL.
func Set(a *syscall.SysProcAttr) *syscall.SysProcAttr {
	if a == nil {
		a = &syscall.SysProcAttr{}
	}
	a.Pdeathsig = syscall.SIGKILL
	return a
}
