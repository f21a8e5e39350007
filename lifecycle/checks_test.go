package lifecycle_test

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/podblocks/podblocks/lifecycle"
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
