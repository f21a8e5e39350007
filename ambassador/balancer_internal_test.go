package ambassador

import (
	"cmp"
	"math/rand/v2"
	"slices"
	"testing"
)

// TestRadixSort: radixSort orders by the upper 32 bits and keeps the input order of ties, as a
// stable comparison sort does, on hashes with many ties.
func TestRadixSort(t *testing.T) {
	rng := rand.New(rand.NewPCG(5, 6))
	for _, n := range []int{0, 1, 2, 1000, 1 << 16} {
		pts := make([]uint64, n)
		for i := range pts {
			pts[i] = uint64(rng.Uint32N(uint32(n/4+1)))<<32 | uint64(rng.Uint32())
		}
		want := slices.Clone(pts)
		slices.SortStableFunc(want, func(a, b uint64) int { return cmp.Compare(a>>32, b>>32) })
		radixSort(pts)
		if !slices.Equal(want, pts) {
			t.Errorf("n=%d: radixSort differs from a stable sort by the upper 32 bits", n)
		}
	}
}
