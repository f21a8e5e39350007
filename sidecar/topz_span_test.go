package sidecar

import (
	"testing"
	"testing/synctest"
	"time"
)

// TestTopzSpan: with snapshots every p, the CPU use is computed over at least a second and less
// than 1.5 s plus p (the doc's promise); from p = 1 s on, over exactly p.
func TestTopzSpan(t *testing.T) {
	for _, p := range []time.Duration{10 * time.Millisecond, 100 * time.Millisecond, 300 * time.Millisecond,
		500 * time.Millisecond, 900 * time.Millisecond, 990 * time.Millisecond, time.Second, 2500 * time.Millisecond} {
		t.Run(p.String(), func(t *testing.T) {
			root := t.TempDir()
			synctest.Test(t, func(t *testing.T) {
				z := NewTopz(root)
				var shortest, longest time.Duration
				for began := time.Now(); time.Since(began) < 20*time.Second; {
					now := time.Now()
					z.mu.Lock()
					b := z.baseline(now)
					z.mu.Unlock()
					if b != nil {
						span := now.Sub(b.at)
						if shortest == 0 || span < shortest {
							shortest = span
						}
						longest = max(longest, span)
					}
					if _, err := z.Snapshot(); err != nil {
						t.Fatal(err)
					}
					time.Sleep(p)
				}
				limit := 1500*time.Millisecond + p
				if p >= time.Second {
					limit = p
				}
				if shortest < time.Second || longest > limit {
					t.Errorf("snapshots every %v: span from %v to %v, want within [1s, %v]", p, shortest, longest, limit)
				}
			})
		})
	}
}
