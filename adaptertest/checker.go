package adaptertest

import (
	"context"
	"testing"
	"time"

	"github.com/podblocks/podblocks/adapter/health"
)

// TestChecker is the conformance suite for health.Checker implementations: healthy must check
// healthy and unhealthy must not; both must fail promptly with a cancelled context, and healthy
// must stay healthy under concurrent checks.
func TestChecker(t *testing.T, healthy, unhealthy health.Checker) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	t.Run("healthy", func(t *testing.T) {
		if err := healthy.Check(ctx); err != nil {
			t.Errorf("healthy checker: %v", err)
		}
	})
	t.Run("unhealthy", func(t *testing.T) {
		if err := unhealthy.Check(ctx); err == nil {
			t.Error("unhealthy checker reported healthy")
		}
	})
	t.Run("cancelled", func(t *testing.T) {
		cctx, ccancel := context.WithCancel(context.Background())
		ccancel()
		start := time.Now()
		if err := healthy.Check(cctx); err == nil {
			t.Error("check with a cancelled context reported healthy")
		}
		if d := time.Since(start); d > 10*time.Second {
			t.Errorf("check with a cancelled context took %v", d)
		}
	})
	t.Run("concurrent", func(t *testing.T) {
		errs := make(chan error, 4)
		for range 4 {
			go func() { errs <- healthy.Check(ctx) }()
		}
		for range 4 {
			if err := <-errs; err != nil {
				t.Errorf("concurrent check: %v", err)
			}
		}
	})
}
