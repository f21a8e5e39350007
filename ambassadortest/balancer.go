package ambassadortest

import (
	"fmt"
	"math"
	"math/rand/v2"
	"sync"
	"testing"
	"time"

	"github.com/podblocks/podblocks/ambassador"
)

// BalancerTraits says what a balancer under test promises beyond the Balancer contract.
type BalancerTraits struct {
	// Hashing balancers send equal keys to the same endpoint and move only the keys of an endpoint
	// that is removed.
	Hashing bool
	// Tolerance is the allowed relative deviation of an endpoint's share from its weight's share
	// over many picks (0 means 0.05 for non-hashing balancers, 0.25 for hashing ones).
	Tolerance float64
}

// TestBalancer is the conformance suite for ambassador.Balancer implementations: index range,
// empty and single-endpoint sets, weighted shares, allocation-free Pick and Done, concurrent use,
// and for hashing balancers key affinity and minimal disruption.
func TestBalancer(t *testing.T, nb ambassador.NewBalancer, traits BalancerTraits) {
	t.Helper()
	tol := traits.Tolerance
	if tol == 0 {
		tol = 0.05
		if traits.Hashing {
			tol = 0.25
		}
	}
	eps := func(weights ...int) []ambassador.Endpoint {
		out := make([]ambassador.Endpoint, len(weights))
		for i, w := range weights {
			out[i] = ambassador.Endpoint{Addr: fmt.Sprintf("10.0.0.%d:80", i+1), Weight: w}
		}
		return out
	}

	t.Run("Empty", func(t *testing.T) {
		b := nb(nil)
		for k := range uint64(10) {
			if got := b.Pick(k); got != -1 {
				t.Fatalf("Pick(%d) on no endpoints = %d, want -1", k, got)
			}
		}
	})
	t.Run("Single", func(t *testing.T) {
		b := nb(eps(3))
		for k := range uint64(100) {
			i := b.Pick(k * 0x9e3779b97f4a7c15)
			if i != 0 {
				t.Fatalf("Pick = %d, want 0", i)
			}
			b.Done(i)
		}
	})
	for _, weights := range [][]int{{1, 1, 1}, {5, 1, 1}, {1, 2, 3, 4}, {1, 0, 2}} {
		t.Run(fmt.Sprintf("Shares%v", weights), func(t *testing.T) {
			b := nb(eps(weights...))
			total := 0
			for _, w := range weights {
				total += max(w, 1)
			}
			const n = 60000
			counts := make([]int, len(weights))
			rng := rand.New(rand.NewPCG(1, 2))
			for range n {
				i := b.Pick(rng.Uint64())
				if i < 0 || i >= len(weights) {
					t.Fatalf("Pick = %d, out of range [0,%d)", i, len(weights))
				}
				counts[i]++
				b.Done(i)
			}
			for i, w := range weights {
				want := float64(n) * float64(max(w, 1)) / float64(total)
				if dev := math.Abs(float64(counts[i])-want) / want; dev > tol {
					t.Errorf("endpoint %d (weight %d) got %d picks, want %.0f ±%.0f%% (counts %v)", i, w, counts[i], want, tol*100, counts)
				}
			}
		})
	}
	t.Run("HugeWeights", func(t *testing.T) {
		// Weights above ambassador.MaxWeight count as MaxWeight: the balancer builds in bounded
		// time, without overflow, and the two endpoints share evenly.
		for _, weights := range [][]int{{math.MaxInt, ambassador.MaxWeight}, {math.MaxInt / 2, math.MaxInt / 2}, {math.MaxInt / 160, math.MaxInt / 160}} {
			built := make(chan ambassador.Balancer, 1)
			go func() { built <- nb(eps(weights...)) }()
			var b ambassador.Balancer
			select {
			case b = <-built:
			case <-time.After(20 * time.Second):
				t.Fatalf("building over weights %v takes more than 20s", weights)
			}
			counts := make([]int, 2)
			const n = 20000
			rng := rand.New(rand.NewPCG(3, 4))
			for range n {
				i := b.Pick(rng.Uint64())
				if i < 0 || i > 1 {
					t.Fatalf("weights %v: Pick = %d, out of range [0,2)", weights, i)
				}
				counts[i]++
				b.Done(i)
			}
			if dev := math.Abs(float64(counts[0])-n/2) / (n / 2); dev > tol {
				t.Errorf("weights %v: picks %v, want even ±%.0f%%", weights, counts, tol*100)
			}
		}
	})
	t.Run("NoAllocs", func(t *testing.T) {
		b := nb(eps(1, 2, 3))
		var k uint64
		allocs := testing.AllocsPerRun(1000, func() {
			k += 0x9e3779b97f4a7c15
			b.Done(b.Pick(k))
		})
		if allocs != 0 {
			t.Errorf("Pick+Done allocates %.1f times per call, want 0", allocs)
		}
	})
	t.Run("Concurrent", func(t *testing.T) {
		b := nb(eps(1, 1, 2))
		var wg sync.WaitGroup
		bad := make(chan int, 4)
		for g := range 4 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for j := range 2000 {
					i := b.Pick(uint64(g*100000 + j))
					if i < 0 || i > 2 {
						bad <- i
						return
					}
					b.Done(i)
				}
			}()
		}
		wg.Wait()
		close(bad)
		for i := range bad {
			t.Errorf("concurrent Pick = %d, out of range", i)
		}
	})
	if !traits.Hashing {
		return
	}
	t.Run("Affinity", func(t *testing.T) {
		b1, b2 := nb(eps(1, 1, 1, 1)), nb(eps(1, 1, 1, 1))
		for k := uint64(1); k < 5000; k++ {
			key := k * 0x9e3779b97f4a7c15
			i, j := b1.Pick(key), b2.Pick(key)
			if i != j || b1.Pick(key) != i {
				t.Fatalf("key %d went to %d then %d/%d: want the same endpoint", key, i, b1.Pick(key), j)
			}
		}
	})
	t.Run("MinimalDisruption", func(t *testing.T) {
		all := eps(1, 1, 1, 1, 1)
		before := nb(all)
		// Remove endpoint 2: keys on other endpoints must stay (allow 2% noise for table-based
		// balancers like maglev, whose guarantee is near-minimal).
		rest := append(append([]ambassador.Endpoint(nil), all[:2]...), all[3:]...)
		after := nb(rest)
		moved, stayedTotal := 0, 0
		for k := uint64(1); k < 20000; k++ {
			key := k * 0x9e3779b97f4a7c15
			i := before.Pick(key)
			if i == 2 {
				continue
			}
			stayedTotal++
			if rest[after.Pick(key)].Addr != all[i].Addr {
				moved++
			}
		}
		if frac := float64(moved) / float64(stayedTotal); frac > 0.02 {
			t.Errorf("%.1f%% of keys not on the removed endpoint moved, want <= 2%%", frac*100)
		}
	})
}
