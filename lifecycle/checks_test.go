package lifecycle_test

import (
	"context"
	"net/http"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/podblocks/podblocks/lifecycle"
	"github.com/podblocks/podblocks/lifecycletest"
)

// TestCheckTimeoutBounds: a check's Timeout is its answer's bound. A Func that ignores its ctx
// and returns nil after its Timeout fails with "timed out after" (it must not turn healthy late),
// and the aggregate probe, which runs its checks one after another, answers about the sum of
// their Timeouts when every check hangs: no check takes longer than its Timeout.
func TestCheckTimeoutBounds(t *testing.T) {
	srv := newServer(t)
	release := make(chan struct{})
	defer close(release)
	const timeout = 100 * time.Millisecond
	must(t, srv.AddCheck(lifecycle.Readyz, lifecycle.Check{Name: "late", Timeout: timeout,
		Func: func(context.Context) error {
			time.Sleep(timeout + 300*time.Millisecond) // ignores its ctx, then says healthy
			return nil
		}}))
	const hung = 4
	for i := range hung {
		must(t, srv.AddCheck(lifecycle.Livez, lifecycle.Check{Name: "deaf" + string(rune('a'+i)), Timeout: timeout,
			Func: func(context.Context) error {
				<-release // ignores its ctx
				return nil
			}}))
	}
	base := startServer(t, srv)
	srv.SetState(lifecycle.StateReady)

	if code, body := do(t, "GET", base+"/readyz/late", ""); code != 500 || body != "internal server error: timed out after 100ms\n" {
		t.Errorf("GET /readyz/late = %d %q, want 500 timed out after 100ms", code, body)
	}
	start := time.Now()
	code, body := do(t, "GET", base+"/livez?verbose", "")
	took := time.Since(start)
	if code != 500 || strings.Count(body, "timed out after 100ms") != hung {
		t.Errorf("GET /livez?verbose = %d %q, want 500 with %d timeouts", code, body, hung)
	}
	// The bound's slack (1s) is for a noisy machine; any per-check extra time shows hung times.
	if limit := hung*timeout + time.Second; took > limit {
		t.Errorf("GET /livez with %d hung checks of Timeout %v took %v, want at most %v", hung, timeout, took, limit)
	}
	if code, body := do(t, "GET", base+"/livez/deafa", ""); code != 500 || body != "internal server error: timed out after 100ms\n" {
		t.Errorf("GET /livez/deafa = %d %q, want 500 timed out after 100ms", code, body)
	}
}

// TestStuckCheckHoldsOneCall: a Func that ignores its context and never returns is called once, not
// once per probe: later probes answer "timed out" from the call still running. Run does not wait for
// it longer than half the safety margin.
func TestStuckCheckHoldsOneCall(t *testing.T) {
	const margin = 200 * time.Millisecond
	srv := newServer(t, lifecycle.WithSafetyMargin(margin))
	release := make(chan struct{})
	var calls atomic.Int32
	must(t, srv.AddCheck(lifecycle.Livez, lifecycle.Check{Name: "deaf", Timeout: 50 * time.Millisecond,
		Func: func(context.Context) error {
			calls.Add(1)
			<-release // ignores its ctx
			return nil
		}}))
	r := lifecycletest.Start(t, srv)
	lifecycletest.WaitReady(t, srv, 5*time.Second)
	base := "http://" + srv.Addr()
	for range 20 {
		if code, body := do(t, "GET", base+"/livez/deaf", ""); code != 500 || body != "internal server error: timed out after 50ms\n" {
			t.Fatalf("GET /livez/deaf = %d %q, want 500 timed out after 50ms", code, body)
		}
	}
	if n := calls.Load(); n != 1 {
		t.Errorf("20 probes of a check stuck in its first call called it %d times, want 1", n)
	}
	start := time.Now()
	err := r.Stop(10 * time.Second)
	took := time.Since(start)
	close(release)
	if err != nil {
		t.Fatal(err)
	}
	// Slack for a loaded machine: Run waits half the margin, not for the stuck call.
	if took > margin/2+3*time.Second {
		t.Errorf("Run took %v to return with a check stuck for good, want about half the %v margin", took, margin)
	}
}

// TestServerRunWaitsForChecks: a check call still running when the server stops (its context
// cancelled) is waited for: Run returns after it. With a safety margin of 0 Run still waits a
// moment (at least 100ms) for a Func that honours its context.
func TestServerRunWaitsForChecks(t *testing.T) {
	for _, tc := range []struct {
		name    string
		opts    []lifecycle.Option
		cleanup time.Duration // how long the Func takes after its context is cancelled
	}{
		{"default margin", nil, 200 * time.Millisecond},
		{"zero margin", []lifecycle.Option{lifecycle.WithSafetyMargin(0)}, 50 * time.Millisecond},
	} {
		t.Run(tc.name, func(t *testing.T) {
			srv := newServer(t, tc.opts...)
			started := make(chan struct{})
			var returned atomic.Bool
			must(t, srv.AddCheck(lifecycle.Livez, lifecycle.Check{Name: "slow", Timeout: time.Minute,
				Func: func(ctx context.Context) error {
					close(started)
					<-ctx.Done()
					time.Sleep(tc.cleanup) // cleaning up after cancellation
					returned.Store(true)
					return ctx.Err()
				}}))
			r := lifecycletest.Start(t, srv)
			lifecycletest.WaitReady(t, srv, 5*time.Second)
			probed := make(chan struct{})
			go func() {
				defer close(probed)
				if resp, err := http.Get("http://" + srv.Addr() + "/livez"); err == nil {
					resp.Body.Close()
				}
			}()
			<-started
			if err := r.Stop(10 * time.Second); err != nil {
				t.Fatal(err)
			}
			if !returned.Load() {
				t.Error("Server.Run returned while a check it called was still running")
			}
			<-probed
		})
	}
}

// TestCheckProberLeavingKeepsCallForOthers: a prober that gives up (kubelet timeoutSeconds shorter
// than Check.Timeout, a closed connection) must not cancel the shared call for another prober
// waiting on it: the patient one gets the check's answer, not "timed out".
func TestCheckProberLeavingKeepsCallForOthers(t *testing.T) {
	srv := newServer(t)
	must(t, srv.AddCheck(lifecycle.Livez, lifecycle.Check{Name: "slowish", Timeout: 5 * time.Second,
		Func: func(ctx context.Context) error {
			select {
			case <-time.After(500 * time.Millisecond): // healthy, answers in 0.5s
				return nil
			case <-ctx.Done():
				return ctx.Err()
			}
		}}))
	lifecycletest.Start(t, srv)
	lifecycletest.WaitReady(t, srv, 5*time.Second)
	url := "http://" + srv.Addr() + "/livez/slowish"
	impatient := make(chan struct{})
	go func() { // gives up after 100ms
		defer close(impatient)
		ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
		defer cancel()
		req, _ := http.NewRequestWithContext(ctx, "GET", url, nil)
		if resp, err := http.DefaultClient.Do(req); err == nil {
			resp.Body.Close()
		}
	}()
	time.Sleep(30 * time.Millisecond) // the patient prober joins the impatient one's call
	start := time.Now()
	code, body := do(t, "GET", url, "")
	if code != http.StatusOK {
		t.Errorf("patient prober got %d %q after %v; the check is healthy in 0.5s", code, body, time.Since(start))
	}
	<-impatient
}
