package adaptertest

import (
	"context"
	"testing"
	"time"

	"github.com/podblocks/podblocks/adapter/scrape"
)

// TestProbe is the conformance suite for scrape.Probe implementations. good is a target the
// probe can read (it must yield at least one sample); bad is a target it cannot (unreachable or
// malformed). Every implementation must: return samples with valid, exposable names; fail on
// bad with an error and no panic; fail promptly once ctx is cancelled; and be safe for
// concurrent use.
func TestProbe(t *testing.T, p scrape.Probe, good, bad string) {
	t.Helper()
	t.Run("good target", func(t *testing.T) {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		s, err := p.Probe(ctx, good)
		if err != nil {
			t.Fatalf("Probe(%q): %v", good, err)
		}
		if len(s) == 0 {
			t.Fatalf("Probe(%q) returned no samples", good)
		}
		if c := scrape.Clean(s); len(c) != len(s) {
			t.Errorf("Probe(%q) returned %d samples, %d of them not exposable", good, len(s), len(s)-len(c))
		}
	})
	t.Run("bad target", func(t *testing.T) {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		if _, err := p.Probe(ctx, bad); err == nil {
			t.Errorf("Probe(%q) succeeded, want an error", bad)
		}
	})
	t.Run("cancelled", func(t *testing.T) {
		ctx, cancel := context.WithCancel(context.Background())
		cancel()
		start := time.Now()
		if _, err := p.Probe(ctx, good); err == nil {
			t.Error("Probe with a cancelled context succeeded")
		}
		if d := time.Since(start); d > 10*time.Second {
			t.Errorf("Probe with a cancelled context took %v", d)
		}
	})
	t.Run("concurrent", func(t *testing.T) {
		errs := make(chan error, 4)
		for range 4 {
			go func() {
				ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
				defer cancel()
				_, err := p.Probe(ctx, good)
				errs <- err
			}()
		}
		for range 4 {
			if err := <-errs; err != nil {
				t.Errorf("concurrent Probe: %v", err)
			}
		}
	})
}
