//go:build !linux

package uring

import (
	"errors"
	"syscall"
)

// Ring is io_uring's ring: there is none on this system, New always fails.
type Ring struct{}

// New returns an error: io_uring is Linux's. The caller sends with one system call per send.
func New(entries int) (*Ring, error) { return nil, errors.New("io_uring_setup: not Linux") }

// Entries is how many sends one io_uring_enter makes at most (never called here).
func (r *Ring) Entries() int { return 0 }

// Close does nothing here.
func (r *Ring) Close() {}

// SendAll takes no send here: every result is left not done, and the ring reports ENOSYS.
func (r *Ring) SendAll(fds []int, bufs [][]byte, res []Result) (calls int, taken bool, err syscall.Errno) {
	clear(res)
	return 0, true, syscall.ENOSYS
}
