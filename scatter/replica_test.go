package scatter_test

import (
	"context"
	"errors"
	"math/rand/v2"
	"testing"
	"testing/synctest"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/podblocks/podblocks/scatter"
	"github.com/podblocks/podblocks/scattertest"
)

func replicaSet(t *testing.T, leaves ...*scattertest.Leaf[int, int]) *scatter.ReplicaSet[int, int] {
	t.Helper()
	rs := make([]scatter.Leaf[int, int], len(leaves))
	for i, l := range leaves {
		rs[i] = l
	}
	s, err := scatter.NewReplicaSet(rs...)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func respond(v int) func(int) int { return func(int) int { return v } }

func TestHedgeStaticDelay(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		slow := scattertest.NewLeaf(1, scattertest.Constant(100*time.Millisecond), respond(10))
		fast := scattertest.NewLeaf(2, scattertest.Constant(time.Millisecond), respond(20))
		f, err := scatter.New([]scatter.Leaf[int, int]{replicaSet(t, slow, fast)}, sum,
			scatter.WithSelection(scatter.SelectRoundRobin), scatter.WithHedge(scatter.Hedge{Delay: 5 * time.Millisecond}))
		if err != nil {
			t.Fatal(err)
		}
		start := time.Now()
		res, err := f.Do(t.Context(), 0) // round robin starts at replica 0: the slow one
		if err != nil {
			t.Fatal(err)
		}
		took := time.Since(start)
		f.Wait()
		got := res.Slots[0].Report
		want := scatter.Report{Status: scatter.StatusOK, Latency: 6 * time.Millisecond, Replica: 1, Attempts: 2, Hedged: true, HedgeWon: true}
		if diff := cmp.Diff(want, got); diff != "" {
			t.Errorf("report (-want +got):\n%s", diff)
		}
		if res.Out != 20 || took != 6*time.Millisecond || res.Hedges != 1 {
			t.Errorf("out %d took %v hedges %d, want 20 6ms 1", res.Out, took, res.Hedges)
		}
		// The loser was cancelled the moment the winner answered: no work went on after.
		if st := slow.Stats(); st.Canceled != 1 || st.Completed != 0 || st.Lingered != 0 || st.Inflight != 0 {
			t.Errorf("slow replica stats = %+v, want one call canceled without lingering", st)
		}
	})
}

func TestFailover(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		bad := scattertest.NewLeaf(1, scattertest.Constant(time.Millisecond), respond(10))
		bad.SetFailRate(1)
		good := scattertest.NewLeaf(2, scattertest.Constant(time.Millisecond), respond(20))
		for _, hedge := range []bool{false, true} {
			opts := []scatter.Option{scatter.WithSelection(scatter.SelectRoundRobin)}
			if hedge {
				opts = append(opts, scatter.WithHedge(scatter.Hedge{Delay: 50 * time.Millisecond}))
			}
			f, err := scatter.New([]scatter.Leaf[int, int]{replicaSet(t, bad, good)}, sum, opts...)
			if err != nil {
				t.Fatal(err)
			}
			res, err := f.Do(t.Context(), 0)
			if err != nil {
				t.Fatal(err)
			}
			want := scatter.Report{Status: scatter.StatusOK, Latency: 2 * time.Millisecond, Replica: 1, Attempts: 2, Hedged: true, HedgeWon: true}
			if diff := cmp.Diff(want, res.Slots[0].Report); diff != "" {
				t.Errorf("hedge=%v: report (-want +got):\n%s", hedge, diff)
			}
			f.Wait()
		}
	})
}

func TestReplicaSetAlone(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		bad := scattertest.NewLeaf(1, scattertest.Constant(time.Millisecond), respond(10))
		bad.SetFailRate(1)
		s := replicaSet(t, bad, bad)
		if _, err := s.Call(t.Context(), 0); !errors.Is(err, scattertest.ErrInjected) {
			t.Fatalf("Call = %v, want the replicas' error", err)
		}
		if bad.Stats().Calls != 2 {
			t.Errorf("calls = %d, want both replicas tried", bad.Stats().Calls)
		}
		if _, err := scatter.NewReplicaSet[int, int](); !errors.Is(err, scatter.ErrNoReplicas) {
			t.Errorf("NewReplicaSet() = %v, want ErrNoReplicas", err)
		}
	})
}

// With every replica slow, hedges stay within the budget: Budget per primary call plus Burst.
func TestHedgeBudgetAllSlow(t *testing.T) {
	for _, pct := range []float64{0, 0.95} {
		synctest.Test(t, func(t *testing.T) {
			const shards, rounds = 10, 100
			var leaves []scatter.Leaf[int, int]
			var all []*scattertest.Leaf[int, int]
			for i := range shards {
				a := scattertest.NewLeaf(uint64(2*i), scattertest.Constant(50*time.Millisecond), respond(1))
				b := scattertest.NewLeaf(uint64(2*i+1), scattertest.Constant(50*time.Millisecond), respond(1))
				all = append(all, a, b)
				leaves = append(leaves, replicaSet(t, a, b))
			}
			f, err := scatter.New(leaves, sum, scatter.WithHedge(scatter.Hedge{Percentile: pct, Delay: time.Millisecond, Budget: 0.05, Burst: 5}))
			if err != nil {
				t.Fatal(err)
			}
			hedges := 0
			for range rounds {
				res, err := f.Do(t.Context(), 0)
				if err != nil {
					t.Fatal(err)
				}
				hedges += res.Hedges
			}
			f.Wait()
			calls := 0
			for _, l := range all {
				calls += l.Stats().Calls
			}
			limit := int(0.05*shards*rounds) + 5
			if hedges > limit || calls != shards*rounds+hedges {
				t.Errorf("percentile %v: hedges = %d (calls %d), want at most %d and calls = primaries + hedges", pct, hedges, calls, limit)
			}
			if pct == 0 { // a static 1ms delay wants to hedge every call: the budget is what stops it
				if hedges < limit-1 {
					t.Errorf("hedges = %d, want the budget (%d) used when every call is late", hedges, limit)
				}
				_, _, rows := f.Statusz()
				if rows[5][0] != "hedge budget exhausted" || rows[5][1] == "0" {
					t.Errorf("statusz rows = %v, want exhausted budget counted", rows)
				}
			}
		})
	}
}

func TestAdaptiveDelayFollowsPercentile(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		// Uniform 1..11ms: p90 is 10ms.
		a := scattertest.NewLeaf(1, scattertest.Uniform(time.Millisecond, 11*time.Millisecond), respond(1))
		b := scattertest.NewLeaf(2, scattertest.Uniform(time.Millisecond, 11*time.Millisecond), respond(1))
		rs := replicaSet(t, a, b)
		f, err := scatter.New([]scatter.Leaf[int, int]{rs}, sum,
			scatter.WithHedge(scatter.Hedge{Percentile: 0.9, Delay: 100 * time.Millisecond, Budget: -1}))
		if err != nil {
			t.Fatal(err)
		}
		hedged := 0
		const n = 2000
		for range n {
			res, _ := f.Do(t.Context(), 0)
			if res.Slots[0].Hedged {
				hedged++
			}
		}
		f.Wait()
		q := rs.Sketch().Quantile(0.9)
		if q < 9*time.Millisecond || q > 11*time.Millisecond {
			t.Errorf("sketch p90 = %v, want about 10ms", q)
		}
		// Hedged: calls slower than the p90 delay, about 10% (the first 50 calls use the static delay).
		if frac := float64(hedged) / n; frac < 0.05 || frac > 0.16 {
			t.Errorf("hedged %.3f of calls, want about 0.10", frac)
		}
	})
}

func TestC3PrefersTheFastReplica(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		slow := scattertest.NewLeaf(1, scattertest.Constant(10*time.Millisecond), respond(1))
		fast := scattertest.NewLeaf(2, scattertest.Constant(time.Millisecond), respond(2))
		for _, tc := range []struct {
			sel      scatter.Selection
			min, max int
		}{{scatter.SelectC3, 180, 200}, {scatter.SelectRoundRobin, 100, 100}} {
			before := fast.Stats().Calls
			f, err := scatter.New([]scatter.Leaf[int, int]{replicaSet(t, slow, fast)}, sum, scatter.WithSelection(tc.sel))
			if err != nil {
				t.Fatal(err)
			}
			for range 200 {
				if _, err := f.Do(t.Context(), 0); err != nil {
					t.Fatal(err)
				}
			}
			if got := fast.Stats().Calls - before; got < tc.min || got > tc.max {
				t.Errorf("selection %d: fast replica got %d of 200 calls, want %d..%d", tc.sel, got, tc.min, tc.max)
			}
		}
	})
}

func TestC3CountsOutstanding(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		// Equal latency; concurrent fan-outs must spread over both replicas, not pile onto one.
		a := scattertest.NewLeaf(1, scattertest.Constant(10*time.Millisecond), respond(1))
		b := scattertest.NewLeaf(2, scattertest.Constant(10*time.Millisecond), respond(2))
		f, err := scatter.New([]scatter.Leaf[int, int]{replicaSet(t, a, b)}, sum)
		if err != nil {
			t.Fatal(err)
		}
		for range 5 { // warm the averages
			f.Do(t.Context(), 0)
		}
		done := make(chan struct{})
		for range 20 {
			go func() {
				f.Do(context.Background(), 0)
				done <- struct{}{}
			}()
		}
		time.Sleep(time.Millisecond)
		sa, sb := a.Stats().Inflight, b.Stats().Inflight
		for range 20 {
			<-done
		}
		if sa < 8 || sb < 8 {
			t.Errorf("in flight %d and %d, want both near 10", sa, sb)
		}
	})
}

func TestProbation(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		ls := []*scattertest.Leaf[int, int]{
			scattertest.NewLeaf(1, scattertest.Constant(time.Millisecond), respond(0)),
			scattertest.NewLeaf(2, scattertest.Constant(time.Millisecond), respond(1)),
			scattertest.NewLeaf(3, scattertest.Constant(time.Millisecond), respond(2)),
		}
		rs := replicaSet(t, ls...)
		f, err := scatter.New([]scatter.Leaf[int, int]{rs}, sum, scatter.WithSelection(scatter.SelectRoundRobin),
			scatter.WithHedge(scatter.Hedge{Delay: 5 * time.Millisecond, Budget: -1}),
			scatter.WithProbation(scatter.Probation{Factor: 3, ShadowEvery: 5, ShadowTimeout: time.Second}))
		if err != nil {
			t.Fatal(err)
		}
		run := func(n int) {
			for range n {
				if _, err := f.Do(t.Context(), 0); err != nil {
					t.Fatal(err)
				}
			}
		}
		run(30)
		ls[0].SetLatency(scattertest.Constant(200 * time.Millisecond))
		run(60)
		if !rs.Stats()[0].Probation {
			t.Fatalf("stats = %+v, want replica 0 on probation", rs.Stats())
		}
		c0 := ls[0].Stats().Calls
		run(50)
		f.Wait()
		// On probation it gets shadows only: one every 5 calls of the set.
		if got := ls[0].Stats().Calls - c0; got != 10 {
			t.Errorf("replica on probation got %d calls in 50, want 10 shadows", got)
		}
		ls[0].SetLatency(scattertest.Constant(time.Millisecond))
		run(200)
		f.Wait()
		if rs.Stats()[0].Probation {
			t.Errorf("stats = %+v, want replica 0 back after recovering", rs.Stats())
		}
		_, _, rows := f.Statusz()
		if rows[6][1] != "1" {
			t.Errorf("statusz = %v, want one probation", rows)
		}
	})
}

func TestSketchQuantiles(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	var s scatter.Sketch
	s.Window = 1 << 30
	for range 100000 {
		s.Observe(time.Duration(1+r.IntN(1000)) * time.Millisecond)
	}
	for _, q := range []float64{0.5, 0.9, 0.99} {
		want := q * 1000 * float64(time.Millisecond)
		got := float64(s.Quantile(q))
		if got < want*0.97 || got > want*1.06 {
			t.Errorf("q%.2f = %v, want within -3%%/+6%% of %v", q, time.Duration(got), time.Duration(want))
		}
	}
	// Decay: after a regime change the sketch follows the new latencies.
	var d scatter.Sketch
	d.Window = 100
	for range 1000 {
		d.Observe(100 * time.Millisecond)
	}
	for range 1000 {
		d.Observe(time.Millisecond)
	}
	if got := d.Quantile(0.95); got > 2*time.Millisecond {
		t.Errorf("after the change p95 = %v, want about 1ms", got)
	}
	var e scatter.Sketch
	if e.Quantile(0.5) != 0 || e.Count() != 0 {
		t.Error("empty sketch should answer 0")
	}
}

func newRand(seed uint64) *rand.Rand { return rand.New(rand.NewPCG(seed, seed)) }
