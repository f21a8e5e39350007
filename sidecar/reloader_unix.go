//go:build unix

package sidecar

import "syscall"

// errNoSignals is nil: Unix processes can be signalled.
var errNoSignals error

// signalProcess sends sig to the process pid (kill(2)).
var signalProcess = func(pid int, sig syscall.Signal) error { return syscall.Kill(pid, sig) }
