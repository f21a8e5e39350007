package scatter_test

import (
	"fmt"
	"testing"
	"testing/synctest"
	"time"

	"github.com/podblocks/podblocks/scatter"
	"github.com/podblocks/podblocks/scattertest"
)

// A 2-replica shard: the slow replica goes on probation, then the fast one starts failing at
// once. The slow, healthy replica must take over, with hedging (failover within the budget) and
// without (failover in order), and leave probation: the fast one's average is made of errors.
func TestProbationKeepsFailover(t *testing.T) {
	for _, hedge := range []bool{true, false} {
		t.Run(fmt.Sprintf("hedge=%v", hedge), func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				fast := scattertest.NewLeaf(1, scattertest.Constant(time.Millisecond), respond(1))
				slow := scattertest.NewLeaf(2, scattertest.Constant(10*time.Millisecond), respond(2))
				rs := replicaSet(t, fast, slow)
				opts := []scatter.Option{scatter.WithSelection(scatter.SelectRoundRobin), scatter.WithProbation(scatter.Probation{})}
				if hedge {
					opts = append(opts, scatter.WithHedge(scatter.Hedge{Delay: 50 * time.Millisecond, Budget: -1}))
				}
				f, err := scatter.New([]scatter.Leaf[int, int]{rs}, sum, opts...)
				if err != nil {
					t.Fatal(err)
				}
				for range 40 {
					if _, err := f.Do(t.Context(), 0); err != nil {
						t.Fatal(err)
					}
				}
				f.Wait()
				if !rs.Stats()[1].Probation {
					t.Fatalf("setup: slow replica not on probation: %+v", rs.Stats())
				}
				fast.SetFailRate(1)
				if failed := failures(t, f, 1000); failed > 0 {
					t.Errorf("hedge %v: %d of 1000 fan-outs failed although replica 1 is healthy; stats %+v", hedge, failed, rs.Stats())
				}
				if rs.Stats()[1].Probation {
					t.Errorf("hedge %v: replica 1 still on probation although replica 0 only fails: %+v", hedge, rs.Stats())
				}
			})
		})
	}
}

// C3 (the default) must not keep ranking first a replica that fails at once, however fast its
// errors: with hedging on, failovers would spend the budget, and then the shard fails although
// its other replica is healthy.
func TestC3RanksFailingReplicaLast(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		fast := scattertest.NewLeaf(1, scattertest.Constant(time.Millisecond), respond(1))
		slow := scattertest.NewLeaf(2, scattertest.Constant(5*time.Millisecond), respond(2))
		rs := replicaSet(t, fast, slow)
		f, err := scatter.New([]scatter.Leaf[int, int]{rs}, sum, scatter.WithHedge(scatter.Hedge{Percentile: 0.95}))
		if err != nil {
			t.Fatal(err)
		}
		for range 100 {
			if _, err := f.Do(t.Context(), 0); err != nil {
				t.Fatal(err)
			}
		}
		before := fast.Stats().Calls
		fast.SetFailRate(1)
		if failed := failures(t, f, 1000); failed > 0 {
			t.Errorf("%d of 1000 fan-outs failed although replica 1 is healthy; stats %+v", failed, rs.Stats())
		}
		if dead := fast.Stats().Calls - before; dead > 200 {
			t.Errorf("the failing replica got %d of 1000 calls' attempts; stats %+v", dead, rs.Stats())
		}
	})
}

// A replica ranked last for its errors gets tried again after a bounded number of calls, and
// serves again once it recovered.
func TestFailingReplicaComesBack(t *testing.T) {
	for _, sel := range []scatter.Selection{scatter.SelectC3, scatter.SelectRoundRobin} {
		t.Run(fmt.Sprint("selection=", sel), func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				fast := scattertest.NewLeaf(1, scattertest.Constant(time.Millisecond), respond(1))
				slow := scattertest.NewLeaf(2, scattertest.Constant(5*time.Millisecond), respond(2))
				rs := replicaSet(t, fast, slow)
				f, err := scatter.New([]scatter.Leaf[int, int]{rs}, sum, scatter.WithSelection(sel))
				if err != nil {
					t.Fatal(err)
				}
				fast.SetFailRate(1)
				for range 3000 {
					if _, err := f.Do(t.Context(), 0); err != nil {
						t.Fatal(err)
					}
				}
				fast.SetFailRate(0)
				for range 2000 {
					if _, err := f.Do(t.Context(), 0); err != nil {
						t.Fatal(err)
					}
				}
				before := fast.Stats().Calls
				for range 100 {
					if _, err := f.Do(t.Context(), 0); err != nil {
						t.Fatal(err)
					}
				}
				if got := fast.Stats().Calls - before; got < 40 {
					t.Errorf("selection %d: the recovered replica got %d of 100 calls; stats %+v", sel, got, rs.Stats())
				}
			})
		})
	}
}

// Two identical replicas, 2% of calls slow: probation triggered by that noise must not leave the
// shard a one-replica order that is never hedged.
func TestProbationKeepsHedging(t *testing.T) {
	slowCalls := func(prob bool) int {
		slow := 0
		synctest.Test(t, func(t *testing.T) {
			lat := scattertest.Bimodal(scattertest.Constant(time.Millisecond), scattertest.Constant(200*time.Millisecond), 0.02)
			a := scattertest.NewLeaf(1, lat, respond(1))
			b := scattertest.NewLeaf(2, lat, respond(2))
			rs := replicaSet(t, a, b)
			opts := []scatter.Option{scatter.WithHedge(scatter.Hedge{Delay: 10 * time.Millisecond, Budget: 0.1})}
			if prob {
				opts = append(opts, scatter.WithProbation(scatter.Probation{}))
			}
			f, err := scatter.New([]scatter.Leaf[int, int]{rs}, sum, opts...)
			if err != nil {
				t.Fatal(err)
			}
			for range 2000 {
				start := time.Now()
				if _, err := f.Do(t.Context(), 0); err != nil {
					t.Fatal(err)
				}
				if time.Since(start) >= 200*time.Millisecond {
					slow++
				}
			}
			f.Wait()
		})
		return slow
	}
	without, with := slowCalls(false), slowCalls(true)
	if with > without+3 {
		t.Errorf("%d of 2000 fan-outs took >= 200ms with probation, %d without: probation stops hedging", with, without)
	}
}

// failures runs n fan-outs of f and returns how many failed.
func failures(t *testing.T, f *scatter.Fanout[int, int, int], n int) int {
	t.Helper()
	failed := 0
	for range n {
		if _, err := f.Do(t.Context(), 0); err != nil {
			failed++
		}
	}
	f.Wait()
	return failed
}
