package scatter_test

import (
	"cmp"
	"math/rand/v2"
	"slices"
	"testing"

	"github.com/podblocks/podblocks/scatter"
)

// Property: TopKMerge over random shards in any fold order equals sorting every item and keeping
// the first k, for a better that is a total order.
func TestTopKMergeProperty(t *testing.T) {
	type item struct{ score, id int }
	better := func(a, b item) bool {
		if a.score != b.score {
			return a.score > b.score
		}
		return a.id < b.id
	}
	order := func(a, b item) int { return cmp.Or(cmp.Compare(b.score, a.score), cmp.Compare(a.id, b.id)) }
	r := rand.New(rand.NewPCG(1, 2))
	for trial := range 2000 {
		k := r.IntN(12) - 1 // k <= 0 keeps nothing
		shards := make([][]item, 1+r.IntN(6))
		var all []item
		id := 0
		for i := range shards {
			for range r.IntN(10) {
				v := item{r.IntN(5), id}
				id++
				shards[i] = append(shards[i], v)
				all = append(all, v)
			}
		}
		m := scatter.TopKMerge(k, better, func(x []item) []item { return x })
		var acc []item
		for _, i := range r.Perm(len(shards)) {
			acc = m.Fold(acc, i, shards[i])
		}
		got, err := m.Final(acc, nil)
		if err != nil {
			t.Fatal(err)
		}
		slices.SortFunc(all, order)
		want := all[:max(0, min(k, len(all)))]
		if len(got) != len(want) || (len(want) > 0 && !slices.Equal(got, want)) {
			t.Fatalf("trial %d k=%d: got %v want %v", trial, k, got, want)
		}
	}
}
