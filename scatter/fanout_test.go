package scatter_test

import (
	"context"
	"errors"
	"fmt"
	"runtime"
	"sync/atomic"
	"testing"
	"testing/synctest"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/podblocks/podblocks/scatter"
)

// behaviour of one test leaf: sleep d (honouring ctx unless hang), then answer v or fail.
type behaviour struct {
	d     time.Duration
	fail  bool
	panic bool
	hang  bool // ignore ctx
}

type probe struct {
	calls, canceled atomic.Int32
}

func leavesOf(p *probe, bs ...behaviour) []scatter.Leaf[int, int] {
	out := make([]scatter.Leaf[int, int], len(bs))
	for i, b := range bs {
		out[i] = scatter.LeafFunc[int, int](func(ctx context.Context, req int) (int, error) {
			p.calls.Add(1)
			if b.panic {
				panic(fmt.Sprintf("leaf %d exploded", i))
			}
			if b.hang {
				time.Sleep(b.d)
			} else {
				t := time.NewTimer(b.d)
				defer t.Stop()
				select {
				case <-t.C:
				case <-ctx.Done():
					p.canceled.Add(1)
					return 0, ctx.Err()
				}
			}
			if b.fail {
				return 0, fmt.Errorf("leaf %d: boom", i)
			}
			return req*100 + i, nil
		})
	}
	return out
}

func ms(n int) time.Duration { return time.Duration(n) * time.Millisecond }

var sum = scatter.Merge[int, int]{Fold: func(acc, _ int, r int) int { return acc + r }}

type outcome struct {
	Statuses []string
	Out      int
	Answered int
	Why      string
	Took     time.Duration
	Err      string
	Calls    int32
	Canceled int32
}

func TestFanout(t *testing.T) {
	ok := func(n int) behaviour { return behaviour{d: ms(n)} }
	tests := []struct {
		name   string
		leaves []behaviour
		opts   []scatter.Option
		want   outcome
	}{
		{
			name:   "all answer",
			leaves: []behaviour{ok(1), ok(3), ok(2)},
			want:   outcome{Statuses: []string{"ok", "ok", "ok"}, Out: 903, Answered: 3, Why: "all", Took: ms(3), Calls: 3},
		},
		{
			name:   "tolerant keeps going past an error",
			leaves: []behaviour{ok(1), {d: ms(1), fail: true}, ok(2)},
			want:   outcome{Statuses: []string{"ok", "error", "ok"}, Out: 602, Answered: 2, Why: "all", Took: ms(2), Calls: 3},
		},
		{
			name:   "fail-fast cancels the rest",
			leaves: []behaviour{ok(5), {d: ms(1), fail: true}, ok(5)},
			opts:   []scatter.Option{scatter.WithFailFast()},
			want: outcome{Statuses: []string{"canceled", "error", "canceled"}, Out: 0, Answered: 0, Why: "failfast", Took: ms(1),
				Err: "scatter: shard 1: leaf 1: boom", Calls: 3, Canceled: 2},
		},
		{
			name:   "deadline cuts a hanging leaf",
			leaves: []behaviour{ok(1), {d: time.Hour, hang: true}, ok(2)},
			opts:   []scatter.Option{scatter.WithTimeout(ms(10))},
			want:   outcome{Statuses: []string{"ok", "timeout", "ok"}, Out: 602, Answered: 2, Why: "context", Took: ms(10), Calls: 3},
		},
		{
			name:   "per-leaf timeout",
			leaves: []behaviour{ok(1), ok(50), ok(2)},
			opts:   []scatter.Option{scatter.WithLeafTimeout(ms(4))},
			want:   outcome{Statuses: []string{"ok", "timeout", "ok"}, Out: 602, Answered: 2, Why: "all", Took: ms(4), Calls: 3, Canceled: 1},
		},
		{
			name:   "quorum returns early and cancels the rest",
			leaves: []behaviour{ok(4), ok(1), ok(3), ok(2), ok(5)},
			opts:   []scatter.Option{scatter.WithQuorum(3)},
			want: outcome{Statuses: []string{"canceled", "ok", "ok", "ok", "canceled"}, Out: 906, Answered: 3, Why: "quorum",
				Took: ms(3), Calls: 5, Canceled: 2},
		},
		{
			name:   "coverage 0.5 of 4 is 2",
			leaves: []behaviour{ok(4), ok(1), ok(3), ok(2)},
			opts:   []scatter.Option{scatter.WithCoverage(0.5)},
			want: outcome{Statuses: []string{"canceled", "ok", "canceled", "ok"}, Out: 604, Answered: 2, Why: "quorum",
				Took: ms(2), Calls: 4, Canceled: 2},
		},
		{
			name:   "quorum not reached by the deadline",
			leaves: []behaviour{ok(1), ok(30), ok(40)},
			opts:   []scatter.Option{scatter.WithQuorum(2), scatter.WithTimeout(ms(10))},
			want: outcome{Statuses: []string{"ok", "timeout", "timeout"}, Out: 300, Answered: 1, Why: "context", Took: ms(10),
				Err: "scatter: 1 of 3 shards answered, 2 required: context deadline exceeded", Calls: 3, Canceled: 2},
		},
		{
			name:   "a panic is that leaf's error",
			leaves: []behaviour{ok(1), {panic: true}, ok(2)},
			want:   outcome{Statuses: []string{"ok", "error", "ok"}, Out: 602, Answered: 2, Why: "all", Took: ms(2), Calls: 3},
		},
		{
			name:   "a panic in the last leaf (which Do may call itself)",
			leaves: []behaviour{ok(1), ok(2), {panic: true}},
			want:   outcome{Statuses: []string{"ok", "ok", "error"}, Out: 601, Answered: 2, Why: "all", Took: ms(2), Calls: 3},
		},
		{
			name:   "one leaf",
			leaves: []behaviour{ok(2)},
			want:   outcome{Statuses: []string{"ok"}, Out: 300, Answered: 1, Why: "all", Took: ms(2), Calls: 1},
		},
		{
			name:   "nobody answers",
			leaves: []behaviour{{d: ms(1), fail: true}, {d: ms(2), fail: true}},
			want: outcome{Statuses: []string{"error", "error"}, Answered: 0, Why: "all", Took: ms(2),
				Err: "scatter: 0 of 2 shards answered, 1 required: leaf 0: boom; leaf 1: boom", Calls: 2},
		},
		{
			name:   "concurrency limit",
			leaves: []behaviour{ok(2), ok(2), ok(2), ok(2), ok(2)},
			opts:   []scatter.Option{scatter.WithConcurrency(2)},
			want:   outcome{Statuses: []string{"ok", "ok", "ok", "ok", "ok"}, Out: 1510, Answered: 5, Why: "all", Took: ms(6), Calls: 5},
		},
		{
			name:   "concurrency limit with a deadline skips the undispatched",
			leaves: []behaviour{ok(2), ok(2), ok(2), ok(2), ok(2)},
			opts:   []scatter.Option{scatter.WithConcurrency(2), scatter.WithTimeout(ms(3))},
			want: outcome{Statuses: []string{"ok", "ok", "timeout", "timeout", "skipped"}, Out: 601, Answered: 2, Why: "context",
				Took: ms(3), Calls: 4, Canceled: 2},
		},
		{
			name:   "canary passes",
			leaves: []behaviour{ok(1), ok(2), ok(3)},
			opts:   []scatter.Option{scatter.WithCanary(1, ms(5))},
			want:   outcome{Statuses: []string{"ok", "ok", "ok"}, Out: 903, Answered: 3, Why: "all", Took: ms(1 + 3), Calls: 3},
		},
		{
			name:   "failing canary protects the rest",
			leaves: []behaviour{{d: ms(1), fail: true}, ok(2), ok(3)},
			opts:   []scatter.Option{scatter.WithCanary(1, ms(5))},
			want: outcome{Statuses: []string{"error", "skipped", "skipped"}, Why: "canary", Took: ms(1),
				Err: "scatter: canary failed: shard 0 error: leaf 0: boom", Calls: 1},
		},
		{
			name:   "late canary",
			leaves: []behaviour{ok(10), ok(2), ok(3)},
			opts:   []scatter.Option{scatter.WithCanary(1, ms(5))},
			want: outcome{Statuses: []string{"timeout", "skipped", "skipped"}, Why: "canary", Took: ms(5),
				Err: "scatter: canary failed: shard 0 timeout: context deadline exceeded", Calls: 1, Canceled: 1},
		},
	}
	// With a context that can never be cancelled and nothing else that could end the fan-out
	// early, Do calls the last shard itself; the outcome must not differ.
	for _, bg := range []bool{false, true} {
		for _, tt := range tests {
			name := tt.name
			if bg {
				name += " (background context)"
			}
			t.Run(name, func(t *testing.T) {
				synctest.Test(t, func(t *testing.T) {
					p := &probe{}
					f, err := scatter.New(leavesOf(p, tt.leaves...), sum, tt.opts...)
					if err != nil {
						t.Fatal(err)
					}
					ctx := t.Context()
					if bg {
						ctx = context.Background()
					}
					start := time.Now()
					res, err := f.Do(ctx, 3)
					took := time.Since(start)
					f.Wait()
					got := outcome{Out: res.Out, Answered: res.Answered, Why: res.Why.String(), Took: took, Calls: p.calls.Load(), Canceled: p.canceled.Load()}
					for _, s := range res.Slots {
						got.Statuses = append(got.Statuses, s.Status.String())
					}
					if err != nil {
						got.Err = err.Error()
					}
					if diff := cmp.Diff(tt.want, got); diff != "" {
						t.Errorf("outcome (-want +got):\n%s", diff)
					}
				})
			})
		}
	}
}

func TestErrorsMatch(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		p := &probe{}
		f, err := scatter.New(leavesOf(p, behaviour{d: ms(50)}, behaviour{d: ms(50)}), sum, scatter.WithTimeout(ms(5)))
		if err != nil {
			t.Fatal(err)
		}
		_, err = f.Do(t.Context(), 1)
		if !errors.Is(err, scatter.ErrShortCoverage) || !errors.Is(err, context.DeadlineExceeded) {
			t.Errorf("err = %v, want ErrShortCoverage and DeadlineExceeded", err)
		}
		var ce *scatter.CoverageError
		if !errors.As(err, &ce) || ce.Answered != 0 || ce.Shards != 2 {
			t.Errorf("err = %#v, want a CoverageError with 0 of 2", err)
		}

		f, err = scatter.New(leavesOf(p, behaviour{panic: true}), sum, scatter.WithFailFast())
		if err != nil {
			t.Fatal(err)
		}
		res, err := f.Do(t.Context(), 1)
		var pe *scatter.PanicError
		var le *scatter.LeafError
		if !errors.As(err, &pe) || !errors.As(err, &le) || le.Shard != 0 || pe.Value != "leaf 0 exploded" || len(pe.Stack) == 0 {
			t.Errorf("err = %v, want a LeafError wrapping a PanicError", err)
		}
		if !errors.As(res.Slots[0].Err, &pe) {
			t.Errorf("slot error = %v, want a PanicError", res.Slots[0].Err)
		}
	})
}

func TestCallerCancel(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		p := &probe{}
		f, err := scatter.New(leavesOf(p, behaviour{d: ms(1)}, behaviour{d: time.Hour, hang: true}), sum)
		if err != nil {
			t.Fatal(err)
		}
		ctx, cancel := context.WithCancel(t.Context())
		time.AfterFunc(ms(3), cancel)
		res, err := f.Do(ctx, 1)
		if err != nil {
			t.Fatalf("Do: %v (one shard answered, which is enough)", err)
		}
		if got := []scatter.Status{res.Slots[0].Status, res.Slots[1].Status}; got[0] != scatter.StatusOK || got[1] != scatter.StatusCanceled {
			t.Errorf("statuses = %v, want [ok canceled]", got)
		}
		if res.Why != scatter.EndContext {
			t.Errorf("why = %v, want context", res.Why)
		}
		f.Wait()
	})
}

func TestLateAnswerDropped(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		p := &probe{}
		f, err := scatter.New(leavesOf(p, behaviour{d: ms(1)}, behaviour{d: ms(20), hang: true}), sum, scatter.WithTimeout(ms(5)))
		if err != nil {
			t.Fatal(err)
		}
		res, _ := f.Do(t.Context(), 1)
		before := res.Slots[1]
		f.Wait() // the hanging leaf answers now, after Do returned
		if diff := cmp.Diff(before.Report, res.Slots[1].Report, cmp.Comparer(func(a, b error) bool { return a == b })); diff != "" {
			t.Errorf("slot changed after Do returned (-before +after):\n%s", diff)
		}
		if res.Out != 100 || res.Slots[1].Resp != 0 {
			t.Errorf("out = %d, resp = %d; the late answer leaked in", res.Out, res.Slots[1].Resp)
		}
	})
}

func TestCanaryRotates(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		var firsts []int
		var started atomic.Int32
		leaves := make([]scatter.Leaf[int, int], 4)
		for i := range leaves {
			leaves[i] = scatter.LeafFunc[int, int](func(ctx context.Context, _ int) (int, error) {
				if started.Add(1) == 1 {
					firsts = append(firsts, i) // only the canary runs first, alone
				}
				return i, nil
			})
		}
		f, err := scatter.New(leaves, scatter.Merge[int, struct{}]{}, scatter.WithCanary(1, ms(5)))
		if err != nil {
			t.Fatal(err)
		}
		for range 5 {
			started.Store(0)
			if _, err := f.Do(t.Context(), 0); err != nil {
				t.Fatal(err)
			}
		}
		if diff := cmp.Diff([]int{0, 1, 2, 3, 0}, firsts); diff != "" {
			t.Errorf("canary shards (-want +got):\n%s", diff)
		}
	})
}

func TestMergeFinal(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		p := &probe{}
		merge := scatter.Merge[int, []int]{
			Init: func() []int { return []int{} },
			Fold: func(acc []int, shard, r int) []int { return append(acc, r) },
			Final: func(acc []int, slots []scatter.Slot[int]) ([]int, error) {
				// Final sees the fold's acc (in arrival order) and may reorder it.
				out := make([]int, 0, len(acc))
				for _, s := range slots {
					if s.Status == scatter.StatusOK {
						out = append(out, s.Resp)
					}
				}
				if len(out) != len(acc) {
					return nil, fmt.Errorf("fold saw %d answers, slots %d", len(acc), len(out))
				}
				return out, nil
			},
		}
		f, err := scatter.New(leavesOf(p, behaviour{d: ms(3)}, behaviour{d: ms(1)}, behaviour{d: ms(2), fail: true}, behaviour{d: ms(2)}), merge)
		if err != nil {
			t.Fatal(err)
		}
		res, err := f.Do(t.Context(), 7)
		if err != nil {
			t.Fatal(err)
		}
		if diff := cmp.Diff([]int{700, 701, 703}, res.Out); diff != "" {
			t.Errorf("out (-want +got):\n%s", diff)
		}
	})
}

func TestConcurrencyCap(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		var now, peak atomic.Int32
		leaves := make([]scatter.Leaf[int, int], 20)
		for i := range leaves {
			leaves[i] = scatter.LeafFunc[int, int](func(ctx context.Context, _ int) (int, error) {
				n := now.Add(1)
				for {
					p := peak.Load()
					if n <= p || peak.CompareAndSwap(p, n) {
						break
					}
				}
				time.Sleep(ms(1))
				now.Add(-1)
				return 1, nil
			})
		}
		f, err := scatter.New(leaves, sum, scatter.WithConcurrency(3))
		if err != nil {
			t.Fatal(err)
		}
		res, err := f.Do(t.Context(), 0)
		if err != nil || res.Out != 20 {
			t.Fatalf("Do = %d, %v; want 20, nil", res.Out, err)
		}
		if peak.Load() != 3 {
			t.Errorf("peak concurrency = %d, want 3", peak.Load())
		}
	})
}

func TestConfigErrors(t *testing.T) {
	leaf := scatter.LeafFunc[int, int](func(context.Context, int) (int, error) { return 0, nil })
	tests := []struct {
		name   string
		leaves []scatter.Leaf[int, int]
		opts   []scatter.Option
		field  string
		is     error
	}{
		{name: "no leaves", is: scatter.ErrNoLeaves},
		{name: "nil leaf", leaves: []scatter.Leaf[int, int]{leaf, nil}, is: scatter.ErrNoLeaves},
		{name: "negative concurrency", opts: []scatter.Option{scatter.WithConcurrency(-1)}, field: "WithConcurrency"},
		{name: "negative timeout", opts: []scatter.Option{scatter.WithTimeout(-1)}, field: "WithTimeout"},
		{name: "negative leaf timeout", opts: []scatter.Option{scatter.WithLeafTimeout(-1)}, field: "WithLeafTimeout"},
		{name: "zero quorum", opts: []scatter.Option{scatter.WithQuorum(0)}, field: "WithQuorum"},
		{name: "coverage above 1", opts: []scatter.Option{scatter.WithCoverage(1.5)}, field: "WithCoverage"},
		{name: "coverage 0", opts: []scatter.Option{scatter.WithCoverage(0)}, field: "WithCoverage"},
		{name: "canary 0", opts: []scatter.Option{scatter.WithCanary(0, 0)}, field: "WithCanary"},
		{name: "hedge percentile 1", opts: []scatter.Option{scatter.WithHedge(scatter.Hedge{Percentile: 1})}, field: "WithHedge"},
		{name: "probation factor 1", opts: []scatter.Option{scatter.WithProbation(scatter.Probation{Factor: 1})}, field: "WithProbation"},
		{name: "unknown selection", opts: []scatter.Option{scatter.WithSelection(9)}, field: "WithSelection"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			leaves := tt.leaves
			if leaves == nil && tt.is == nil {
				leaves = []scatter.Leaf[int, int]{leaf}
			}
			_, err := scatter.New(leaves, sum, tt.opts...)
			if tt.is != nil {
				if !errors.Is(err, tt.is) {
					t.Fatalf("err = %v, want %v", err, tt.is)
				}
				return
			}
			var ce *scatter.ConfigError
			if !errors.As(err, &ce) || ce.Field != tt.field {
				t.Fatalf("err = %v, want a ConfigError for %s", err, tt.field)
			}
		})
	}
}

func TestWithoutLatency(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		p := &probe{}
		for _, tc := range []struct {
			opts []scatter.Option
			want time.Duration
		}{{nil, ms(2)}, {[]scatter.Option{scatter.WithoutLatency()}, 0}} {
			f, err := scatter.New(leavesOf(p, behaviour{d: ms(2)}), sum, tc.opts...)
			if err != nil {
				t.Fatal(err)
			}
			res, err := f.Do(t.Context(), 1)
			if err != nil || res.Slots[0].Latency != tc.want {
				t.Errorf("latency %v (err %v), want %v", res.Slots[0].Latency, err, tc.want)
			}
		}
	})
}

// TestAllocationsDoNotGrowWithShards: Do's allocations are per fan-out, not per shard (the shard
// goroutines share one func value), with a context that can be cancelled and one that cannot: four
// (README), and more now and then when the runtime adds goroutine descriptors; one per shard
// would exceed the bound at every N from 8 on.
func TestAllocationsDoNotGrowWithShards(t *testing.T) {
	if raceOn {
		t.Skip("the race detector allocates")
	}
	for _, n := range []int{1, 8, 64, 256, 4096} {
		most := float64(max(8, n/16))
		leaves := make([]scatter.Leaf[int, int], n)
		for i := range leaves {
			leaves[i] = scatter.LeafFunc[int, int](func(_ context.Context, req int) (int, error) { return req, nil })
		}
		f, err := scatter.New(leaves, scatter.Merge[int, struct{}]{})
		if err != nil {
			t.Fatal(err)
		}
		ctx, cancel := context.WithCancel(context.Background())
		for _, ctx := range []context.Context{context.Background(), ctx} {
			allocs := testing.AllocsPerRun(30, func() {
				if res, err := f.Do(ctx, 1); err != nil || res.Answered != n {
					t.Fatalf("Do: %d answered, err %v", res.Answered, err)
				}
			})
			if allocs > most {
				t.Errorf("%v allocations per Do over %d shards, want at most %v", allocs, n, most)
			}
		}
		cancel()
		f.Wait()
	}
}

// TestEarlyReturnStress races leaves finishing against Do returning early, in real time: the
// folded Out must agree with the slots Do reported, and Wait must return once the late leaves
// are done (their goroutines are not counted one by one).
func TestEarlyReturnStress(t *testing.T) {
	const n = 16
	leaves := make([]scatter.Leaf[int, int], n)
	for i := range leaves {
		leaves[i] = scatter.LeafFunc[int, int](func(ctx context.Context, req int) (int, error) {
			for range (req + i) % 4 {
				runtime.Gosched()
			}
			if (req+i)%7 == 0 {
				return 0, errors.New("no")
			}
			return 1 << i, nil
		})
	}
	for _, tc := range []struct {
		name string
		opts []scatter.Option
	}{
		{"quorum", []scatter.Option{scatter.WithQuorum(5)}},
		{"fail-fast", []scatter.Option{scatter.WithFailFast()}},
		{"canary", []scatter.Option{scatter.WithCanary(2, time.Millisecond), scatter.WithQuorum(9)}},
		{"concurrency", []scatter.Option{scatter.WithConcurrency(3), scatter.WithQuorum(4)}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			for _, merge := range []scatter.Merge[int, int]{{Fold: func(acc, _ int, r int) int { return acc | r }}, {}} {
				f, err := scatter.New(leaves, merge, tc.opts...)
				if err != nil {
					t.Fatal(err)
				}
				for req := range 300 {
					res, _ := f.Do(context.Background(), req)
					var fromSlots int
					for i, s := range res.Slots {
						if s.Status == scatter.StatusOK {
							if s.Resp != 1<<i {
								t.Fatalf("req %d: slot %d resp %d", req, i, s.Resp)
							}
							fromSlots |= s.Resp
						}
					}
					if merge.Fold != nil && res.Out != fromSlots {
						t.Fatalf("req %d: out %b, slots %b", req, res.Out, fromSlots)
					}
				}
				done := make(chan struct{})
				go func() { f.Wait(); close(done) }()
				select {
				case <-done:
				case <-time.After(10 * time.Second):
					t.Fatal("Wait did not return")
				}
			}
		})
	}
}
