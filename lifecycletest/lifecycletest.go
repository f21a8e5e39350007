// Package lifecycletest helps test code built on package lifecycle: run a component for the length of
// a test and check that it shuts down cleanly, and a FakeScaler.
package lifecycletest

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/podblocks/podblocks/lifecycle"
)

// DefaultStopTimeout is how long Start's cleanup waits for a component to return.
const DefaultStopTimeout = 10 * time.Second

// Running is a component started by Start.
type Running struct {
	cancel context.CancelFunc
	done   chan struct{}
	err    error
	once   sync.Once
	stop   error // what the first Stop returned
}

// Start runs c in the background until Stop or the end of the test. At cleanup it cancels c's context
// and fails the test if c does not return within DefaultStopTimeout or returns an error: the
// component contract says Run returns nil when its ctx ended it. If the test called Stop itself,
// cleanup reports nothing more: Stop's result was the test's to check.
func Start(t testing.TB, c lifecycle.Component) *Running {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	r := &Running{cancel: cancel, done: make(chan struct{})}
	go func() {
		defer close(r.done)
		r.err = c.Run(ctx)
	}()
	t.Cleanup(func() {
		t.Helper()
		// A Stop the test called itself has already given the test its result.
		if first, err := r.stopOnce(DefaultStopTimeout); first && err != nil {
			t.Errorf("lifecycletest: %v", err)
		}
	})
	return r
}

// Done is closed when the component's Run has returned.
func (r *Running) Done() <-chan struct{} { return r.done }

// Err returns what Run returned; call it after Done is closed.
func (r *Running) Err() error { return r.err }

// Stop cancels the component and waits up to timeout for Run to return. It returns an error if Run
// did not return in time or returned an error. Calls after the first return the first's result.
func (r *Running) Stop(timeout time.Duration) error {
	_, err := r.stopOnce(timeout)
	return err
}

// stopOnce is Stop, also reporting whether this call was the first.
func (r *Running) stopOnce(timeout time.Duration) (first bool, _ error) {
	r.once.Do(func() {
		first = true
		var err error
		defer func() { r.stop = err }()
		r.cancel()
		t := time.NewTimer(timeout)
		defer t.Stop()
		select {
		case <-r.done:
			if r.err != nil {
				err = fmt.Errorf("run returned %v after its context was cancelled; want nil", r.err)
			}
		case <-t.C:
			err = fmt.Errorf("run did not return within %v of its context being cancelled", timeout)
		}
	})
	return first, r.stop
}

// WaitReady waits up to timeout for r to become ready and fails the test otherwise.
func WaitReady(t testing.TB, r lifecycle.Readier, timeout time.Duration) {
	t.Helper()
	tm := time.NewTimer(timeout)
	defer tm.Stop()
	select {
	case <-r.Ready():
	case <-tm.C:
		t.Fatalf("lifecycletest: not ready within %v", timeout)
	}
}

// ReadyComponent is a component that reports when it is ready, as most of podblocks' do.
type ReadyComponent interface {
	lifecycle.Component
	lifecycle.Readier
}

// StartReady is Start followed by a wait of up to timeout for c to become ready. It fails the test if
// c is not ready in time, or if Run returns before c is ready (with what Run returned).
func StartReady(t testing.TB, c ReadyComponent, timeout time.Duration) *Running {
	t.Helper()
	r := Start(t, c)
	tm := time.NewTimer(timeout)
	defer tm.Stop()
	select {
	case <-c.Ready():
	case <-r.done:
		select {
		case <-c.Ready(): // became ready, then returned: the select above may pick either
		default:
			t.Fatalf("lifecycletest: run returned %v before the component was ready", r.err)
		}
	case <-tm.C:
		t.Fatalf("lifecycletest: not ready within %v", timeout)
	}
	return r
}

// FakeScaler is a lifecycle.Scaler that keeps the replica count in memory and records every Scale
// call. Set Err to make every call fail. The zero value has zero replicas and is ready to use.
type FakeScaler struct {
	mu       sync.Mutex
	replicas int32
	calls    []int32
	// Err, when non-nil, is returned by every call.
	Err error
}

var _ lifecycle.Scaler = (*FakeScaler)(nil)

// Replicas returns the current count.
func (f *FakeScaler) Replicas(ctx context.Context) (int32, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.Err != nil {
		return 0, f.Err
	}
	return f.replicas, ctx.Err()
}

// Scale records the call and sets the count.
func (f *FakeScaler) Scale(ctx context.Context, replicas int32) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.Err != nil {
		return f.Err
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	if replicas < 0 {
		return fmt.Errorf("lifecycletest: replicas %d: must be >= 0", replicas)
	}
	f.calls = append(f.calls, replicas)
	f.replicas = replicas
	return nil
}

// Calls returns the counts passed to Scale, in order.
func (f *FakeScaler) Calls() []int32 {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]int32(nil), f.calls...)
}
