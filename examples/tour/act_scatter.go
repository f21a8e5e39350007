package main

import (
	"context"
	"fmt"
	"slices"
	"sync"
	"time"

	"github.com/podblocks/podblocks/scatter"
	"github.com/podblocks/podblocks/scattertest"
)

// scatterAct fans queries out to 20 in-process shards of 2 replicas whose calls usually take 2ms
// but 100ms for 2% of calls, first without hedging, then with adaptive hedging at the 95th
// percentile, and compares the tails.
func scatterAct() act {
	return act{
		pattern: "scatter/gather",
		pkg:     "scatter",
		run: func(ctx context.Context, s *stage) (string, error) {
			const shards, replicas, requests, parallel = 20, 2, 150, 4
			lat := scattertest.Bimodal(scattertest.Uniform(1500*time.Microsecond, 2500*time.Microsecond), scattertest.Constant(100*time.Millisecond), 0.02)
			leaves := make([]scatter.Leaf[string, int], shards)
			for i := range leaves {
				reps := make([]scatter.Leaf[string, int], replicas)
				for r := range reps {
					reps[r] = scattertest.NewLeaf(uint64(i*replicas+r), lat, func(string) int { return 1 })
				}
				rs, err := scatter.NewReplicaSet(reps...)
				if err != nil {
					return "", err
				}
				leaves[i] = rs
			}
			s.say("%d shards x %d replicas; a call takes ~2ms, but 2%% of calls take 100ms", shards, replicas)
			s.say("so without help about 1 fan-out in 3 waits for a slow leaf (1 - 0.98^%d)", shards)
			count := scatter.Merge[int, int]{Fold: func(acc, _ int, n int) int { return acc + n }}
			type outcome struct {
				p50, p90, p99 time.Duration
				hedges, short int
			}
			measure := func(opts ...scatter.Option) (outcome, *scatter.Fanout[string, int, int], error) {
				f, err := scatter.New(leaves, count, append(opts, scatter.WithTimeout(time.Second))...)
				if err != nil {
					return outcome{}, nil, err
				}
				var mu sync.Mutex
				var o outcome
				lats := make([]time.Duration, 0, requests)
				var wg sync.WaitGroup
				next := make(chan struct{})
				for range parallel {
					wg.Go(func() {
						for range next {
							start := time.Now()
							res, _ := f.Do(ctx, "q")
							mu.Lock()
							lats = append(lats, time.Since(start))
							o.hedges += res.Hedges
							if res.Answered < shards {
								o.short++
							}
							mu.Unlock()
						}
					})
				}
				for range requests {
					select {
					case next <- struct{}{}:
					case <-ctx.Done():
					}
				}
				close(next)
				wg.Wait()
				f.Wait()
				if err := ctx.Err(); err != nil { // fewer requests, or some cut short
					return o, f, fmt.Errorf("%d of %d fan-outs done: %w", len(lats), requests, err)
				}
				slices.Sort(lats)
				o.p50, o.p90, o.p99 = lats[len(lats)/2], lats[len(lats)*9/10], lats[min(len(lats)-1, len(lats)*99/100)]
				return o, f, nil
			}
			plain, _, err := measure()
			if err != nil {
				return "", err
			}
			s.say("no hedging:      p50 %v  p90 %v  p99 %v", plain.p50.Round(100*time.Microsecond), plain.p90.Round(100*time.Microsecond), plain.p99.Round(time.Millisecond))
			hedged, f, err := measure(scatter.WithHedge(scatter.Hedge{Percentile: 0.95, Delay: 5 * time.Millisecond, Budget: 0.1, Burst: 30, MinSamples: 20}))
			if err != nil {
				return "", err
			}
			extra := 100 * float64(hedged.hedges) / float64(requests*shards)
			s.say("adaptive hedge:  p50 %v  p90 %v  p99 %v  with %d backups (+%.1f%% requests; budget 10%% + burst 30)",
				hedged.p50.Round(100*time.Microsecond), hedged.p90.Round(100*time.Microsecond), hedged.p99.Round(time.Millisecond), hedged.hedges, extra)
			s.keep(nil, f)
			return fmt.Sprintf("p90 %v -> %v with hedging, +%.1f%% requests", plain.p90.Round(100*time.Microsecond), hedged.p90.Round(100*time.Microsecond), extra), nil
		},
	}
}
