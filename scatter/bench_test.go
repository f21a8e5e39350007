package scatter_test

import (
	"context"
	"flag"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/podblocks/podblocks/scatter"
	"github.com/prometheus/client_golang/prometheus"
	"golang.org/x/sync/errgroup"
)

// benchReverse runs BenchmarkFanoutOverhead's implementations in reverse order within each size,
// so that a script alternating it between runs (bench/scatter/run.sh) gives no implementation the
// benefit of always running first (or last) after a size change.
var benchReverse = flag.Bool("fanout.reverse", false, "run BenchmarkFanoutOverhead's implementations in reverse order")

type noop struct{}

func (noop) Call(_ context.Context, req int) (int, error) { return req, nil }

var overheadSizes = []int{1, 8, 64, 512, 4096}

// BenchmarkFanoutOverhead compares a scatter fan-out over no-op leaves with the hand-written
// baseline it replaces: an errgroup loop collecting answers into a slice. All implementations run
// one after the other for each size in the same benchmark binary. Note that `go test -count`
// repeats each sub-benchmark back to back (errgroup ten times, then scatter ten times), so it does
// not alternate them: bench/scatter/run.sh runs the binary once per round instead.
//
// Pairs with the same context: errgroup and scatter get context.Background() (which Do knows can
// never be cancelled: it then calls one shard itself), and the -cancelable pair a context that
// can be, as an HTTP request's.
func BenchmarkFanoutOverhead(b *testing.B) {
	type impl struct {
		name string
		run  func(b *testing.B, ctx context.Context, leaves []scatter.Leaf[int, int])
	}
	impls := []impl{
		{"errgroup", benchErrgroup},
		{"scatter", func(b *testing.B, ctx context.Context, leaves []scatter.Leaf[int, int]) { benchDo(b, ctx, leaves) }},
		{"scatter-nolatency", func(b *testing.B, ctx context.Context, leaves []scatter.Leaf[int, int]) {
			benchDo(b, ctx, leaves, scatter.WithoutLatency())
		}},
		{"scatter-registered", func(b *testing.B, ctx context.Context, leaves []scatter.Leaf[int, int]) {
			benchDo(b, ctx, leaves, scatter.WithRegisterer(prometheus.NewRegistry()))
		}},
		{"errgroup-cancelable", benchErrgroup},
		{"scatter-cancelable", func(b *testing.B, ctx context.Context, leaves []scatter.Leaf[int, int]) { benchDo(b, ctx, leaves) }},
	}
	if *benchReverse {
		slices.Reverse(impls)
	}
	for _, n := range overheadSizes {
		leaves := make([]scatter.Leaf[int, int], n)
		for i := range leaves {
			leaves[i] = noop{}
		}
		for _, im := range impls {
			b.Run("N="+strconv.Itoa(n)+"/"+im.name, func(b *testing.B) {
				ctx := context.Background()
				if strings.HasSuffix(im.name, "-cancelable") {
					c, cancel := context.WithCancel(ctx)
					defer cancel()
					ctx = c
				}
				im.run(b, ctx, leaves)
			})
		}
	}
}

// benchErrgroup is the baseline: an errgroup loop collecting the leaves' answers into a slice.
func benchErrgroup(b *testing.B, ctx context.Context, leaves []scatter.Leaf[int, int]) {
	b.ReportAllocs()
	n := len(leaves)
	cpu := cpuTime()
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
	reportCPU(b, cpu)
}

// benchDo measures Do over leaves with ctx.
func benchDo(b *testing.B, ctx context.Context, leaves []scatter.Leaf[int, int], opts ...scatter.Option) {
	b.ReportAllocs()
	f, err := scatter.New(leaves, scatter.Merge[int, struct{}]{}, opts...)
	if err != nil {
		b.Fatal(err)
	}
	cpu := cpuTime()
	for b.Loop() {
		if _, err := f.Do(ctx, 1); err != nil {
			b.Fatal(err)
		}
	}
	reportCPU(b, cpu)
	f.Wait()
}

func reportCPU(b *testing.B, start time.Duration) {
	b.ReportMetric(float64(cpuTime()-start)/float64(b.N), "cpu-ns/op")
}
