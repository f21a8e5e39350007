// Package uringtest has io_uring refused or its completions lost, as a kernel or a seccomp filter
// would, for the tests of packages that send through package uring's rings. Each function installs
// its fault until the test ends; install it before the code under test makes its rings, and stop
// that code before the test ends (cleanups run last first). Installing or removing a fault has
// uring.New forget a refusal of io_uring_setup it remembered: the next New asks again. The faults
// are process-wide: tests that install them must not run in parallel.
package uringtest

import (
	"sync/atomic"
	"syscall"
	"testing"

	"github.com/podblocks/podblocks/internal/uring/internal/hook"
)

// Faults is how io_uring fails.
type Faults struct {
	SetupErr syscall.Errno // non-zero: io_uring_setup fails with it (EPERM, as a seccomp profile)
	// EnterOK > 0: that many io_uring_enter calls are made, and every later one fails with EPERM
	// before the kernel takes anything, as a seccomp filter refuses it.
	EnterOK int64
}

// Counts are the calls seen since the faults were installed.
type Counts struct {
	Setups  atomic.Int64 // io_uring_setup calls
	Enters  atomic.Int64 // io_uring_enter calls, refused ones included
	Refused atomic.Int64 // io_uring_enter calls refused
}

// Inject installs f (the zero Faults only counts) until tb ends and returns the counts.
func Inject(tb testing.TB, f Faults) *Counts {
	c := new(Counts)
	setup, enter := hook.Setup, hook.Enter
	tb.Cleanup(func() {
		hook.Setup, hook.Enter = setup, enter
		hook.Gen.Add(1)
	})
	defer hook.Gen.Add(1)
	hook.Setup = func(real func() (int, syscall.Errno)) (int, syscall.Errno) {
		c.Setups.Add(1)
		if f.SetupErr != 0 {
			return -1, f.SetupErr
		}
		if setup != nil {
			return setup(real)
		}
		return real()
	}
	hook.Enter = func(call *hook.Call) syscall.Errno {
		if c.Enters.Add(1) > f.EnterOK && f.EnterOK > 0 {
			c.Refused.Add(1)
			return syscall.EPERM
		}
		return next(enter, call)
	}
	return c
}

// LoseCompletions has, until tb ends, the first io_uring_enter call after ok calls for which pick
// (given the descriptors of the sends the call submits) is true make its sends, drop their
// completions and fail with EIO, as if the kernel took the sends and waiting for them failed: the
// sends' outcome is unknown to the ring's user. It returns the counts of the calls made and of the
// calls pick chose.
func LoseCompletions(tb testing.TB, ok int64, pick func(fds []int) bool) (calls, picked *atomic.Int64) {
	calls, picked = new(atomic.Int64), new(atomic.Int64)
	enter := hook.Enter
	tb.Cleanup(func() {
		hook.Enter = enter
		hook.Gen.Add(1)
	})
	defer hook.Gen.Add(1)
	hook.Enter = func(call *hook.Call) syscall.Errno {
		lose := calls.Load() >= ok && pick(call.Pending())
		e := next(enter, call)
		if calls.Add(1) > ok && lose && e == 0 && picked.Add(1) == 1 {
			call.Drop()
			return syscall.EIO
		}
		return e
	}
	return calls, picked
}

// next passes call to the hook installed before, or makes it.
func next(prev func(*hook.Call) syscall.Errno, call *hook.Call) syscall.Errno {
	if prev != nil {
		return prev(call)
	}
	return call.Enter()
}
