package await_test

import (
	"sync/atomic"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/podblocks/podblocks/internal/await"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

func TestTrueReturnsOnceTheConditionHolds(t *testing.T) {
	var calls atomic.Int32
	start := time.Now()
	await.True(t, "the third call", time.Second, func() bool { return calls.Add(1) >= 3 })
	if n := calls.Load(); n != 3 {
		t.Errorf("cond called %d times, want 3", n)
	}
	if took := time.Since(start); took < 2*await.Interval {
		t.Errorf("returned after %v, before two polling intervals", took)
	}
}

// fatalRecorder records Fatalf instead of ending the test, so the timeout path can be checked.
type fatalRecorder struct {
	testing.TB
	msg string
}

func (f *fatalRecorder) Helper() {}
func (f *fatalRecorder) Fatalf(format string, args ...any) {
	f.msg = format
	panic(f) // stop True's loop as t.Fatalf would (runtime.Goexit cannot be caught here)
}

func TestTrueFailsAfterTheWait(t *testing.T) {
	rec := &fatalRecorder{TB: t}
	start := time.Now()
	func() {
		defer func() {
			if r := recover(); r != rec {
				t.Fatalf("recovered %v, want the recorder's panic", r)
			}
		}()
		await.True(rec, "never", 50*time.Millisecond, func() bool { return false })
	}()
	if rec.msg == "" {
		t.Fatal("True returned without failing the test")
	}
	if took := time.Since(start); took < 50*time.Millisecond {
		t.Errorf("failed after %v, before the 50ms wait", took)
	}
}
