//go:build unix

package lifecycle_test

import (
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/podblocks/podblocks/lifecycle"
)

func TestSecondSignalStopsAtOnce(t *testing.T) {
	var cancelled atomic.Int64
	rig := startApp(t, workHandler(&cancelled), lifecycle.WithSignals(syscall.SIGUSR1),
		lifecycle.WithPropagationDelay(time.Minute), lifecycle.WithGracePeriod(2*time.Minute))
	syscall.Kill(syscall.Getpid(), syscall.SIGUSR1)
	// The first signal starts the drain: readiness fails, and the app keeps serving.
	deadline := time.Now().Add(5 * time.Second)
	for {
		code, _ := do(t, "GET", rig.hooksURL+"/readyz", "")
		if code == 500 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("not draining after the first signal")
		}
		time.Sleep(10 * time.Millisecond)
	}
	if code, _ := do(t, "GET", rig.appURL+"/", ""); code != 200 {
		t.Errorf("app during propagation = %d, want 200", code)
	}
	start := time.Now()
	syscall.Kill(syscall.Getpid(), syscall.SIGUSR1)
	select {
	case <-rig.done:
	case <-time.After(5 * time.Second):
		t.Fatal("second signal did not stop the app")
	}
	if took := time.Since(start); took > 3*time.Second {
		t.Errorf("stop after the second signal took %v", took)
	}
}
