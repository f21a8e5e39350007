package lifecycle_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/podblocks/podblocks/lifecycle"
)

// TestCheckTimeoutVerdict: a check whose Func honours its ctx answers for itself after its Timeout
// (a health check with a failure threshold may still be healthy after one timeout), while one
// that ignores its ctx still cannot hang a probe: it fails CheckTimeoutGrace after its Timeout.
func TestCheckTimeoutVerdict(t *testing.T) {
	srv := newServer(t)
	release := make(chan struct{})
	defer close(release)
	must(t, srv.AddCheck(lifecycle.Readyz, lifecycle.Check{Name: "tolerant", Timeout: 50 * time.Millisecond,
		Func: func(ctx context.Context) error {
			<-ctx.Done()
			return nil // one timeout, below its failure threshold: still healthy
		}}))
	must(t, srv.AddCheck(lifecycle.Readyz, lifecycle.Check{Name: "own", Timeout: 50 * time.Millisecond,
		Func: func(ctx context.Context) error {
			<-ctx.Done()
			return errors.New("db: 3 consecutive timeouts")
		}}))
	must(t, srv.AddCheck(lifecycle.Readyz, lifecycle.Check{Name: "deaf", Timeout: 50 * time.Millisecond,
		Func: func(context.Context) error {
			<-release // ignores its ctx
			return nil
		}}))
	base := startServer(t, srv)
	srv.SetState(lifecycle.StateReady)
	for _, tc := range []struct {
		path     string
		wantCode int
		wantBody string
	}{
		{"/readyz/tolerant", 200, "ok"},
		{"/readyz/own", 500, "internal server error: db: 3 consecutive timeouts\n"},
		{"/readyz/deaf", 500, "internal server error: timed out after 50ms\n"},
	} {
		start := time.Now()
		code, body := do(t, "GET", base+tc.path, "")
		if code != tc.wantCode || body != tc.wantBody {
			t.Errorf("GET %s = %d %q, want %d %q", tc.path, code, body, tc.wantCode, tc.wantBody)
		}
		if took := time.Since(start); took > 50*time.Millisecond+lifecycle.CheckTimeoutGrace+5*time.Second {
			t.Errorf("GET %s took %v: the check's timeout did not bound it", tc.path, took)
		}
	}
}
