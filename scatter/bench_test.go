package scatter_test

import (
	"context"
	"strconv"
	"syscall"
	"testing"
	"time"

	"github.com/podblocks/podblocks/scatter"
	"github.com/prometheus/client_golang/prometheus"
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
		})
		for _, v := range []struct {
			name string
			opts []scatter.Option
		}{{"scatter", nil}, {"scatter-nolatency", []scatter.Option{scatter.WithoutLatency()}}} {
			b.Run("N="+strconv.Itoa(n)+"/"+v.name, func(b *testing.B) { benchDo(b, context.Background(), leaves, v.opts...) })
		}
	}
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

// cpuTime is the process's user+system CPU time. The benchmark machines are shared and loaded,
// so wall-clock ns/op mostly measures waiting for a CPU; CPU time per op is what the code costs.
func cpuTime() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

func reportCPU(b *testing.B, start time.Duration) {
	b.ReportMetric(float64(cpuTime()-start)/float64(b.N), "cpu-ns/op")
}

// BenchmarkFanoutVariants runs BenchmarkFanoutOverhead's scatter case with metrics registered (the
// overhead benchmark uses the defaults, where an unregistered fan-out skips its metrics), and with
// a cancelable context.
func BenchmarkFanoutVariants(b *testing.B) {
	for _, n := range []int{1, 8, 64} {
		leaves := make([]scatter.Leaf[int, int], n)
		for i := range leaves {
			leaves[i] = noop{}
		}
		b.Run("N="+strconv.Itoa(n)+"/registered", func(b *testing.B) {
			benchDo(b, context.Background(), leaves, scatter.WithRegisterer(prometheus.NewRegistry()))
		})
		// With a context that can be cancelled, Do cannot call a shard itself (it must be able to
		// return when ctx ends while a leaf hangs), so every shard gets a goroutine, as in errgroup.
		b.Run("N="+strconv.Itoa(n)+"/cancelable", func(b *testing.B) {
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			benchDo(b, ctx, leaves)
		})
	}
}
