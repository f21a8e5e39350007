//go:build !linux

package sidecar

import "syscall"

// dieWithSupervisor is false: there is no parent-death signal here (prctl PR_SET_PDEATHSIG is
// Linux's): the children of a Supervisor whose process is killed run on.
const dieWithSupervisor = false

// withParentDeath returns a as it is.
func withParentDeath(a *syscall.SysProcAttr) *syscall.SysProcAttr { return a }
