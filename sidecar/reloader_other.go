//go:build !unix

package sidecar

import (
	"errors"
	"fmt"
	"runtime"
	"syscall"
)

// errNoSignals is what SignalPID's and SignalName's Actions return where a process cannot be sent a
// signal (Windows has no kill(2); its os.Process.Signal only terminates).
var errNoSignals = fmt.Errorf("sidecar: signalling a process is not supported on %s: %w", runtime.GOOS, errors.ErrUnsupported)

// signalProcess always returns errNoSignals.
func signalProcess(int, syscall.Signal) error { return errNoSignals }
