package scatter_test

import (
	"testing"
	"time"

	"github.com/podblocks/podblocks/scatter"
)

// BenchmarkReplicaSet measures the replica-set path over no-op replicas: one set called on its own
// (ranking, one attempt) and a fan-out over 8 three-replica shards with hedging and probation on.
func BenchmarkReplicaSet(b *testing.B) {
	newSet := func() *scatter.ReplicaSet[int, int] {
		rs, err := scatter.NewReplicaSet[int, int](noop{}, noop{}, noop{})
		if err != nil {
			b.Fatal(err)
		}
		return rs
	}
	b.Run("call", func(b *testing.B) {
		rs := newSet()
		b.ReportAllocs()
		for b.Loop() {
			if _, err := rs.Call(b.Context(), 1); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("fanout-8x3", func(b *testing.B) {
		leaves := make([]scatter.Leaf[int, int], 8)
		for i := range leaves {
			leaves[i] = newSet()
		}
		f, err := scatter.New(leaves, scatter.Merge[int, struct{}]{},
			scatter.WithHedge(scatter.Hedge{Delay: time.Second}), scatter.WithProbation(scatter.Probation{}))
		if err != nil {
			b.Fatal(err)
		}
		b.ReportAllocs()
		for b.Loop() {
			if _, err := f.Do(b.Context(), 1); err != nil {
				b.Fatal(err)
			}
		}
		f.Wait()
	})
}
