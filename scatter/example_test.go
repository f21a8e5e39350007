package scatter_test

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/podblocks/podblocks/scatter"
)

// A sharded word count: every shard counts a word in its part of the corpus; the root sums.
func Example() {
	parts := []string{"a rose is a rose", "is a rose", "a"}
	leaves := make([]scatter.Leaf[string, int], len(parts))
	for i, text := range parts {
		leaves[i] = scatter.LeafFunc[string, int](func(ctx context.Context, word string) (int, error) {
			return strings.Count(" "+text+" ", " "+word+" "), nil
		})
	}
	sum := scatter.Merge[int, int]{Fold: func(acc, shard, n int) int { return acc + n }}
	f, err := scatter.New(leaves, sum, scatter.WithTimeout(time.Second))
	if err != nil {
		panic(err)
	}
	res, err := f.Do(context.Background(), "a")
	fmt.Println(res.Out, res.Coverage(), err)
	// Output: 4 1 <nil>
}

// Partial results: one shard fails, the answer covers the others and says so.
func Example_partial() {
	leaves := []scatter.Leaf[int, int]{
		scatter.LeafFunc[int, int](func(ctx context.Context, x int) (int, error) { return x, nil }),
		scatter.LeafFunc[int, int](func(ctx context.Context, x int) (int, error) { return 0, errors.New("disk on fire") }),
		scatter.LeafFunc[int, int](func(ctx context.Context, x int) (int, error) { panic("bug") }),
	}
	f, _ := scatter.New(leaves, scatter.Merge[int, struct{}]{})
	res, err := f.Do(context.Background(), 7)
	for i, s := range res.Slots {
		fmt.Println(i, s.Status, s.Resp, s.Err)
	}
	fmt.Printf("coverage %.2f, err %v\n", res.Coverage(), err)
	// Output:
	// 0 ok 7 <nil>
	// 1 error 0 disk on fire
	// 2 error 0 scatter: leaf panicked: bug
	// coverage 0.33, err <nil>
}

// The k best hits over all shards.
func ExampleTopKMerge() {
	type hit struct {
		Doc   string
		Score float64
	}
	shards := [][]hit{{{"a", 0.9}, {"b", 0.2}}, {{"c", 0.5}, {"d", 0.95}}, {{"e", 0.1}}}
	leaves := make([]scatter.Leaf[string, []hit], len(shards))
	for i, hits := range shards {
		leaves[i] = scatter.LeafFunc[string, []hit](func(context.Context, string) ([]hit, error) { return hits, nil })
	}
	merge := scatter.TopKMerge(3, func(a, b hit) bool { return a.Score > b.Score }, func(h []hit) []hit { return h })
	f, _ := scatter.New(leaves, merge)
	res, _ := f.Do(context.Background(), "query")
	fmt.Println(res.Out)
	// Output: [{d 0.95} {a 0.9} {c 0.5}]
}
