package scatter_test

import (
	"context"
	"strconv"
	"testing"

	"github.com/podblocks/podblocks/scatter"
	"golang.org/x/sync/errgroup"
)

type noop struct{}

func (noop) Call(_ context.Context, req int) (int, error) { return req, nil }

var overheadSizes = []int{1, 8, 64, 512, 4096}

// BenchmarkFanoutOverhead compares a scatter fan-out over no-op leaves with the hand-written
// baseline it replaces: an errgroup loop collecting answers into a slice. Both run in the same
// benchmark binary, alternating per size.
func BenchmarkFanoutOverhead(b *testing.B) {
	for _, n := range overheadSizes {
		leaves := make([]scatter.Leaf[int, int], n)
		for i := range leaves {
			leaves[i] = noop{}
		}
		b.Run("N="+strconv.Itoa(n)+"/errgroup", func(b *testing.B) {
			b.ReportAllocs()
			ctx := context.Background()
			for b.Loop() {
				out := make([]int, n)
				g, gctx := errgroup.WithContext(ctx)
				for i, l := range leaves {
					g.Go(func() error {
						r, err := l.Call(gctx, i)
						out[i] = r
						return err
					})
				}
				if err := g.Wait(); err != nil {
					b.Fatal(err)
				}
			}
		})
		b.Run("N="+strconv.Itoa(n)+"/scatter", func(b *testing.B) {
			b.ReportAllocs()
			f, err := scatter.New(leaves, scatter.Merge[int, struct{}]{})
			if err != nil {
				b.Fatal(err)
			}
			ctx := context.Background()
			for b.Loop() {
				if _, err := f.Do(ctx, 1); err != nil {
					b.Fatal(err)
				}
			}
			f.Wait()
		})
	}
}
