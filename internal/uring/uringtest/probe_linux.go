//go:build linux

package uringtest

import (
	"fmt"
	"syscall"

	"github.com/podblocks/podblocks/internal/uring"
)

// Probe makes a ring and one send through it on a socket pair, as an event loop does: "" if both
// work, else why not (a seccomp filter may allow io_uring_setup and refuse io_uring_enter). Tests
// that need a working io_uring skip with its answer.
func Probe() string {
	ring, err := uring.New(8)
	if err != nil {
		return err.Error()
	}
	defer ring.Close()
	fds, err := syscall.Socketpair(syscall.AF_UNIX, syscall.SOCK_STREAM|syscall.SOCK_CLOEXEC, 0)
	if err != nil {
		return "socketpair: " + err.Error()
	}
	defer syscall.Close(fds[0])
	defer syscall.Close(fds[1])
	res := make([]uring.Result, 1)
	if _, _, e := ring.SendAll(fds[:1], [][]byte{[]byte("x")}, res); e != 0 {
		return "io_uring_enter: " + e.Error()
	}
	if res[0] != (uring.Result{N: 1, Done: true}) {
		return fmt.Sprintf("a send through io_uring: %+v", res[0])
	}
	return ""
}
