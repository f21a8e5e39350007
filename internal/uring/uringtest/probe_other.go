//go:build !linux

package uringtest

import "github.com/podblocks/podblocks/internal/uring"

// Probe says why io_uring does not work here: only Linux has it.
func Probe() string {
	_, err := uring.New(8)
	return err.Error()
}
