// Package hook holds the test hooks of package uring, set by package uringtest only: nil in
// production, where rings make the real system calls.
package hook

import (
	"sync/atomic"
	"syscall"
)

// Call is one io_uring_enter a ring is about to make.
type Call struct {
	Pending func() []int         // descriptors of the sends submitted and not yet taken by the kernel
	Enter   func() syscall.Errno // makes the real call
	Drop    func()               // drops every completion posted and not yet reaped, as if lost
}

var (
	// Setup, if set, is called in place of io_uring_setup; real makes the real call.
	Setup func(real func() (int, syscall.Errno)) (int, syscall.Errno)
	// Enter, if set, is called in place of io_uring_enter.
	Enter func(c *Call) syscall.Errno
	// Gen counts the changes of Setup and Enter: package uring forgets a refusal of io_uring_setup
	// that it remembered under other hooks.
	Gen atomic.Uint64
)
