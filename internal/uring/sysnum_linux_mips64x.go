//go:build linux && (mips64 || mips64le)

package uring

// The n64 ABI's numbers are offset by 5000.
const (
	sysIOUringSetup = 5425
	sysIOUringEnter = 5426
)
