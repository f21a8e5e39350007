package lifecycle

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"github.com/google/go-cmp/cmp"
	"go.uber.org/goleak"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// recorder logs the events of fake components, in order.
type recorder struct {
	mu     sync.Mutex
	events []string
}

func (r *recorder) add(format string, args ...any) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.events = append(r.events, fmt.Sprintf(format, args...))
}

func (r *recorder) get() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]string(nil), r.events...)
}

// fake is a component whose behaviour each test sets.
type fake struct {
	name       string
	rec        *recorder
	readyAfter time.Duration // <0: never ready; implements Readier
	runErr     error         // returned right after start (when non-nil)
	stopTook   time.Duration // time to return after cancel
	ready      chan struct{}
	checkpoint bool
}

func newFake(name string, rec *recorder) *fake {
	return &fake{name: name, rec: rec, ready: make(chan struct{})}
}

func (f *fake) Ready() <-chan struct{} { return f.ready }

func (f *fake) Run(ctx context.Context) error {
	f.rec.add("start %s", f.name)
	if f.runErr != nil {
		f.rec.add("fail %s", f.name)
		return f.runErr
	}
	if f.readyAfter >= 0 {
		select {
		case <-time.After(f.readyAfter):
			close(f.ready)
		case <-ctx.Done():
		}
	}
	<-ctx.Done()
	time.Sleep(f.stopTook)
	f.rec.add("stop %s", f.name)
	return nil
}

func (f *fake) Checkpoint(ctx context.Context) error {
	if f.checkpoint {
		f.rec.add("checkpoint %s", f.name)
	}
	return nil
}

func (f *fake) Restore(ctx context.Context) error {
	if f.checkpoint {
		f.rec.add("restore %s", f.name)
	}
	return nil
}

func TestGroupStartsInOrderAndStopsInReverse(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		rec := &recorder{}
		var g Group
		a, b, c := newFake("a", rec), newFake("b", rec), newFake("c", rec)
		a.readyAfter, b.readyAfter, c.readyAfter = time.Second, 2*time.Second, 0
		b.checkpoint = true
		for _, f := range []*fake{a, b, c} {
			if err := g.Add(f.name, f); err != nil {
				t.Fatal(err)
			}
		}
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan error, 1)
		go func() { done <- g.Run(ctx) }()
		<-g.Ready()
		if got := g.States(); got[2].State != StateReady {
			t.Errorf("state of c after Ready = %v, want ready", got[2].State)
		}
		cancel()
		if err := <-done; err != nil {
			t.Fatalf("Run = %v, want nil", err)
		}
		// b is restored right before it starts, after a is ready.
		want := []string{"start a", "restore b", "start b", "start c", "stop c", "checkpoint b", "stop b", "stop a"}
		if diff := cmp.Diff(want, rec.get()); diff != "" {
			t.Errorf("events (-want +got):\n%s", diff)
		}
		for _, s := range g.States() {
			if s.State != StateStopped {
				t.Errorf("%s state = %v, want stopped", s.Name, s.State)
			}
		}
	})
}

func TestGroupStartFailureRollsBack(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		rec := &recorder{}
		g := Group{StartTimeout: 5 * time.Second}
		a, b, c := newFake("a", rec), newFake("b", rec), newFake("c", rec)
		a.readyAfter, b.readyAfter = 0, -1 // b never becomes ready
		_ = g.Add("a", a)
		_ = g.Add("b", b)
		_ = g.Add("c", c)
		start := time.Now()
		err := g.Run(context.Background())
		if !errors.Is(err, ErrStartTimeout) {
			t.Fatalf("Run = %v, want ErrStartTimeout", err)
		}
		var ce *ComponentError
		if !errors.As(err, &ce) || ce.Name != "b" || ce.Phase != "start" {
			t.Errorf("error = %#v, want b's start error", ce)
		}
		if took := time.Since(start); took != 5*time.Second {
			t.Errorf("Run took %v, want the 5s start timeout", took)
		}
		want := []string{"start a", "start b", "stop b", "stop a"}
		if diff := cmp.Diff(want, rec.get()); diff != "" {
			t.Errorf("events (-want +got):\n%s", diff)
		}
		select {
		case <-g.Ready():
			t.Error("Ready closed after a failed start")
		default:
		}
	})
}

func TestGroupFirstFailureStopsTheRest(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		rec := &recorder{}
		var g Group
		a, b := newFake("a", rec), newFake("b", rec)
		a.readyAfter = 0
		b.readyAfter = -1
		boom := errors.New("boom")
		failing := Func(func(ctx context.Context) error {
			time.Sleep(time.Second)
			rec.add("fail x")
			return boom
		})
		_ = g.Add("a", a)
		_ = g.Add("x", failing)
		_ = g.Add("b", b)
		err := g.Run(context.Background())
		if !errors.Is(err, boom) {
			t.Fatalf("Run = %v, want boom", err)
		}
		// b never becomes ready: x's failure while b starts ends the start at once, and what started
		// is stopped in reverse order.
		want := []string{"start a", "start b", "fail x", "stop b", "stop a"}
		if diff := cmp.Diff(want, rec.get()); diff != "" {
			t.Errorf("events (-want +got):\n%s", diff)
		}
	})
}

func TestGroupRunErrorStopsOthers(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		rec := &recorder{}
		var g Group
		a, b := newFake("a", rec), newFake("b", rec)
		a.readyAfter, b.readyAfter = 0, 0
		boom := errors.New("boom")
		_ = g.Add("a", a)
		_ = g.Add("x", Func(func(ctx context.Context) error {
			select {
			case <-time.After(time.Minute):
				return boom
			case <-ctx.Done():
				return nil
			}
		}))
		_ = g.Add("b", b)
		err := g.Run(context.Background())
		var ce *ComponentError
		if !errors.As(err, &ce) || ce.Name != "x" || ce.Phase != "run" || !errors.Is(err, boom) {
			t.Fatalf("Run = %v, want x's run error", err)
		}
		want := []string{"start a", "start b", "stop b", "stop a"}
		if diff := cmp.Diff(want, rec.get()); diff != "" {
			t.Errorf("events (-want +got):\n%s", diff)
		}
	})
}

func TestGroupStopTimeoutMovesOn(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		rec := &recorder{}
		g := Group{StopTimeout: time.Second}
		a, b := newFake("a", rec), newFake("b", rec)
		a.readyAfter, b.readyAfter = 0, 0
		b.stopTook = 3 * time.Second
		_ = g.Add("a", a)
		_ = g.Add("b", b)
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan error, 1)
		go func() { done <- g.Run(ctx) }()
		<-g.Ready()
		cancel()
		err := <-done
		if !errors.Is(err, ErrStopTimeout) {
			t.Fatalf("Run = %v, want ErrStopTimeout", err)
		}
		// a is stopped one second after b was asked to, while b is still stopping; Run still waits
		// for b.
		want := []string{"start a", "start b", "stop a", "stop b"}
		if diff := cmp.Diff(want, rec.get()); diff != "" {
			t.Errorf("events (-want +got):\n%s", diff)
		}
	})
}

func TestGroupAddValidates(t *testing.T) {
	var g Group
	nop := Func(func(ctx context.Context) error { <-ctx.Done(); return nil })
	for _, tc := range []struct {
		name string
		c    Component
	}{{"", nop}, {"x", nil}} {
		if err := g.Add(tc.name, tc.c); err == nil {
			t.Errorf("Add(%q, %v) = nil, want an error", tc.name, tc.c)
		}
	}
	if err := g.Add("x", nop); err != nil {
		t.Fatal(err)
	}
	if err := g.Add("x", nop); err == nil {
		t.Error("Add of a duplicate name = nil, want an error")
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if err := g.Run(ctx); err != nil {
		t.Errorf("Run with a cancelled ctx = %v", err)
	}
	if err := g.Add("y", nop); err == nil {
		t.Error("Add after Run = nil, want an error")
	}
	if err := g.Run(context.Background()); err == nil {
		t.Error("second Run = nil, want an error")
	}
}

// A component that returns nil on its own, before ctx ended, has finished (a reader at EOF, a Job's
// sidecar): the group stops the others and Run returns nil.
func TestGroupComponentFinishingEndsGroup(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		rec := &recorder{}
		var g Group
		a := newFake("a", rec)
		a.readyAfter = 0
		_ = g.Add("a", a)
		_ = g.Add("x", Func(func(ctx context.Context) error {
			time.Sleep(time.Second)
			rec.add("return x")
			return nil
		}))
		if err := g.Run(context.Background()); err != nil {
			t.Fatalf("Run = %v, want nil", err)
		}
		want := []string{"start a", "return x", "stop a"}
		if diff := cmp.Diff(want, rec.get()); diff != "" {
			t.Errorf("events (-want +got):\n%s", diff)
		}
	})
}

// A ComponentError says "lifecycle: " once, also around this package's own errors.
func TestComponentErrorPrefixOnce(t *testing.T) {
	err := &ComponentError{Name: "x", Phase: "start", Err: ErrStartTimeout}
	if got, want := err.Error(), "lifecycle: x start: not ready within the start timeout"; got != want {
		t.Errorf("Error() = %q, want %q", got, want)
	}
}
