package uring_test

import (
	"syscall"
	"testing"

	"github.com/podblocks/podblocks/internal/uring"
)

// TestOutcome: what each kind of result leaves to the caller.
func TestOutcome(t *testing.T) {
	for _, tc := range []struct {
		res   uring.Result
		known bool
		n     int
		err   syscall.Errno
	}{
		{uring.Result{N: 5, Done: true}, true, 5, 0},
		{uring.Result{Err: syscall.EAGAIN, Done: true}, true, 0, syscall.EAGAIN},
		{uring.Result{Err: syscall.ECONNRESET, Done: true}, true, 0, syscall.ECONNRESET},
		{uring.Result{Err: syscall.EINTR, Done: true}, true, 0, 0},
		{uring.Result{}, true, 0, 0},            // not made: the caller makes it
		{uring.Result{}, false, 0, syscall.EIO}, // outcome unknown
	} {
		if n, err := tc.res.Outcome(tc.known); n != tc.n || err != tc.err {
			t.Errorf("%+v.Outcome(%v) = %d, %v; want %d, %v", tc.res, tc.known, n, err, tc.n, tc.err)
		}
	}
}
