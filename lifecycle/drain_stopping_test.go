package lifecycle_test

import (
	"context"
	"io"
	"net"
	"net/http"
	"sync/atomic"
	"testing"
	"time"

	"github.com/podblocks/podblocks/internal/await"
	"github.com/podblocks/podblocks/lifecycle"
)

// A component that finishes its work (returns nil) while the drain waits for an in-flight request
// (a log reader at EOF, a Job's sidecar) does not cut the request off: it gets its answer, and Run
// returns nil. The request runs longer than the safety margin (the group's stop timeout), well
// inside the drain's 9 s budget.
func TestComponentFinishingDuringDrainKeepsInFlight(t *testing.T) {
	var inflight atomic.Int64
	app, appLn := newServingApp(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		inflight.Add(1)
		time.Sleep(1500 * time.Millisecond) // ignores its context, as many handlers do
		io.WriteString(w, "done")
	}))
	finish := make(chan struct{})
	must(t, app.Add("job", lifecycle.Func(func(ctx context.Context) error {
		select {
		case <-finish:
			return nil // finished its work
		case <-ctx.Done():
			return nil
		}
	})))
	done := runApp(t, context.Background(), app)
	type result struct {
		code int
		body string
		err  error
	}
	got := make(chan result, 1)
	go func() {
		resp, err := http.Get("http://" + appLn.Addr().String() + "/")
		if err != nil {
			got <- result{err: err}
			return
		}
		b, err := io.ReadAll(resp.Body)
		resp.Body.Close()
		got <- result{resp.StatusCode, string(b), err}
	}()
	await.True(t, "in flight", 5*time.Second, func() bool { return inflight.Load() > 0 })
	app.Drain()
	await.True(t, "the app server shutting down", 5*time.Second, refuses(appLn.Addr().String()))
	close(finish)
	if r := <-got; r.err != nil || r.code != http.StatusOK || r.body != "done" {
		t.Errorf("in-flight request when a component finished during the drain: %d %q %v, want 200 done", r.code, r.body, r.err)
	}
	awaitNil(t, done, "the component finished", time.Now(), 2*time.Second)
}

// Ctx ending during the propagation delay stops the App at once: the drain skips what is left of
// the delay, since the servers are about to stop anyway.
func TestCtxEndingDuringPropagationStopsAtOnce(t *testing.T) {
	rig := startApp(t, http.NotFoundHandler(), lifecycle.WithPropagationDelay(10*time.Second),
		lifecycle.WithGracePeriod(30*time.Second), lifecycle.WithSafetyMargin(time.Second))
	rig.app.Drain()
	await.True(t, "/readyz failing once draining", 5*time.Second, func() bool {
		code, _ := do(t, "GET", rig.hooksURL+"/readyz", "")
		return code != http.StatusOK
	})
	start := time.Now()
	rig.cancel()
	select {
	case <-rig.done:
		if took := time.Since(start); took > 2*time.Second {
			t.Errorf("Run returned %v after ctx ended, want at once", took)
		}
		if rig.err != nil {
			t.Errorf("Run = %v, want nil", rig.err)
		}
	case <-time.After(20 * time.Second):
		t.Fatal("Run did not return after ctx ended")
	}
}

// Shutdown's answer window runs from its ctx's deadline, not from when Shutdown noticed it: given a
// ctx whose deadline passed longer ago than CancelAnswerTime (as when a loaded machine wakes the
// drain late), it closes a request that ignores its cancellation at once.
func TestHTTPServerAnswerWindowFromDeadline(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	must(t, err)
	release := make(chan struct{})
	defer close(release)
	var inflight atomic.Int64
	hs := serveInFlight(t, &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		inflight.Add(1)
		<-release
	})}, ln, &inflight)
	ctx, cancel := context.WithDeadline(context.Background(), time.Now().Add(-2*lifecycle.CancelAnswerTime))
	defer cancel()
	// With ctx already done, Shutdown may return before it begins: call it until the server is shut.
	var took time.Duration
	for i := 0; i < 100 && !refuses(hs.Addr())(); i++ {
		start := time.Now()
		_ = hs.Shutdown(ctx)
		took = time.Since(start)
	}
	if !refuses(hs.Addr())() {
		t.Fatal("Shutdown did not shut the server down")
	}
	if took > lifecycle.CancelAnswerTime/2 {
		t.Errorf("Shutdown past its answer window took %v, want at once (the window ended %v ago)", took, lifecycle.CancelAnswerTime)
	}
}
