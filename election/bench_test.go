package election_test

import (
	"sync"
	"testing"

	"github.com/podblocks/podblocks/election"
)

// BenchmarkFenceDo measures a fenced write against its baseline, the same write under a plain
// mutex: the fence's cost is one comparison.
func BenchmarkFenceDo(b *testing.B) {
	b.Run("fence", func(b *testing.B) {
		b.ReportAllocs()
		var f election.Fence
		n := 0
		write := func() error { n++; return nil }
		for i := 0; b.Loop(); i++ {
			_ = f.Do(uint64(i), write)
		}
	})
	b.Run("baseline-mutex", func(b *testing.B) {
		b.ReportAllocs()
		var mu sync.Mutex
		n := 0
		for b.Loop() {
			mu.Lock()
			n++
			mu.Unlock()
		}
	})
}
