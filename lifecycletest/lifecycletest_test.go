package lifecycletest_test

import (
	"context"
	"errors"
	"fmt"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"go.uber.org/goleak"

	"github.com/podblocks/podblocks/lifecycle"
	"github.com/podblocks/podblocks/lifecycletest"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

func TestStopReportsContractViolations(t *testing.T) {
	ok := lifecycletest.Start(t, lifecycle.Func(func(ctx context.Context) error { <-ctx.Done(); return nil }))
	if err := ok.Stop(time.Second); err != nil {
		t.Errorf("well-behaved component: %v", err)
	}

	bad := lifecycletest.Start(t, lifecycle.Func(func(ctx context.Context) error { <-ctx.Done(); return errors.New("boom") }))
	first := bad.Stop(time.Second)
	if first == nil {
		t.Error("component returning an error after cancel: Stop returned nil")
	}
	if again := bad.Stop(time.Second); again == nil || again.Error() != first.Error() {
		t.Errorf("second Stop returned %v; want the first's result, %v", again, first)
	}

	release := make(chan struct{})
	stuck := lifecycletest.Start(t, lifecycle.Func(func(ctx context.Context) error { <-release; return nil }))
	if err := stuck.Stop(50 * time.Millisecond); err == nil {
		t.Error("component ignoring cancel: Stop returned nil")
	}
	close(release)
	<-stuck.Done()
}

func TestFakeScaler(t *testing.T) {
	var f lifecycletest.FakeScaler
	ctx := context.Background()
	for _, n := range []int32{3, 1} {
		if err := f.Scale(ctx, n); err != nil {
			t.Fatal(err)
		}
	}
	if err := f.Scale(ctx, -1); err == nil {
		t.Error("Scale(-1) returned nil")
	}
	if got, _ := f.Replicas(ctx); got != 1 {
		t.Errorf("Replicas = %d, want 1", got)
	}
	if diff := cmp.Diff([]int32{3, 1}, f.Calls()); diff != "" {
		t.Errorf("Calls (-want +got):\n%s", diff)
	}
	f.Err = errors.New("api down")
	if _, err := f.Replicas(ctx); err == nil {
		t.Error("Replicas with Err set returned nil")
	}
}

// fatalTB records the first Fatalf and ends the calling goroutine, as testing.T does, and runs the
// cleanups it was given when asked.
type fatalTB struct {
	testing.TB
	fatal    string
	cleanups []func()
}

func (f *fatalTB) Helper()               {}
func (f *fatalTB) Cleanup(fn func())     { f.cleanups = append(f.cleanups, fn) }
func (f *fatalTB) Errorf(string, ...any) {}
func (f *fatalTB) Fatalf(format string, args ...any) {
	f.fatal = fmt.Sprintf(format, args...)
	runtime.Goexit()
}

// startReady runs StartReady on a fatalTB in its own goroutine (Fatalf ends it) and returns the
// failure it recorded, "" when there was none, after running the cleanups.
func startReady(c lifecycletest.ReadyComponent, timeout time.Duration) string {
	f := &fatalTB{}
	done := make(chan struct{})
	go func() {
		defer close(done)
		lifecycletest.StartReady(f, c, timeout)
	}()
	<-done
	for i := len(f.cleanups) - 1; i >= 0; i-- {
		f.cleanups[i]()
	}
	return f.fatal
}

// readyComp becomes ready after delay, or returns err at once when err is set.
type readyComp struct {
	delay time.Duration
	err   error
	ready chan struct{}
}

func (c *readyComp) Ready() <-chan struct{} { return c.ready }
func (c *readyComp) Run(ctx context.Context) error {
	if c.err != nil {
		return c.err
	}
	select {
	case <-time.After(c.delay):
		close(c.ready)
	case <-ctx.Done():
		return nil
	}
	<-ctx.Done()
	return nil
}

func TestStartReady(t *testing.T) {
	if got := startReady(&readyComp{delay: 10 * time.Millisecond, ready: make(chan struct{})}, 5*time.Second); got != "" {
		t.Errorf("ready component: failed with %q", got)
	}
	got := startReady(&readyComp{err: errors.New("no port"), ready: make(chan struct{})}, 5*time.Second)
	if !strings.Contains(got, "no port") || !strings.Contains(got, "before the component was ready") {
		t.Errorf("component whose Run fails at once: failure %q, want Run's error named", got)
	}
	if got := startReady(&readyComp{delay: time.Hour, ready: make(chan struct{})}, 20*time.Millisecond); !strings.Contains(got, "not ready within") {
		t.Errorf("component never ready: failure %q, want a timeout", got)
	}
}

// TestStartReadyReadyThenReturned: a component that becomes ready and returns at once was ready, whichever
// of the two the wait sees first.
func TestStartReadyReadyThenReturned(t *testing.T) {
	for range 200 {
		ready := make(chan struct{})
		c := &funcReady{ready: ready, run: func(context.Context) error { close(ready); return nil }}
		if got := startReady(c, 5*time.Second); got != "" {
			t.Fatalf("ready, then returned: failed with %q", got)
		}
	}
}

type funcReady struct {
	ready chan struct{}
	run   func(context.Context) error
}

func (f *funcReady) Ready() <-chan struct{}        { return f.ready }
func (f *funcReady) Run(ctx context.Context) error { return f.run(ctx) }
