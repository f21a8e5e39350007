//go:build unix

package sidecar

import (
	"context"
	"errors"
	"syscall"
	"testing"
)

// TestSignalPIDNotAgainOnceExited: once kill(2) found no process with the PID, SignalPID's Action
// signals nothing again, even when a process has the PID by then (reused: another process).
func TestSignalPIDNotAgainOnceExited(t *testing.T) {
	saved := signalProcess
	defer func() { signalProcess = saved }()
	calls := 0
	signalProcess = func(int, syscall.Signal) error {
		calls++
		if calls == 1 {
			return syscall.ESRCH
		}
		return nil // the PID reused
	}
	a := SignalPID(4242, syscall.SIGHUP)
	for i := 1; i <= 2; i++ {
		if err := a(context.Background()); !errors.Is(err, ErrNoProcess) {
			t.Errorf("call %d: %v, want ErrNoProcess", i, err)
		}
	}
	if calls != 1 {
		t.Errorf("kill(2) called %d times, want 1 (not again once the process exited)", calls)
	}
}
