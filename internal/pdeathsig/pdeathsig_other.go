//go:build !linux

package pdeathsig

import "syscall"

// Supported is false: this platform has no parent-death signal.
const Supported = false

// Set returns a unchanged (it may be nil): this platform has no parent-death signal.
func Set(a *syscall.SysProcAttr) *syscall.SysProcAttr { return a }
