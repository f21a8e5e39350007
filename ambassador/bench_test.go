package ambassador_test

import (
	"fmt"
	"math/rand/v2"
	"testing"

	"github.com/podblocks/podblocks/ambassador"
)

// BenchmarkPick measures Balancer.Pick+Done for each balancer over 3 and 50 endpoints. The
// baseline is a uniform random index (rand.IntN), the least any balancer can do.
func BenchmarkPick(b *testing.B) {
	for _, n := range []int{3, 50} {
		eps := make([]ambassador.Endpoint, n)
		for i := range eps {
			eps[i] = ambassador.Endpoint{Addr: fmt.Sprintf("10.0.%d.%d:80", i/250, i%250), Weight: 1 + i%3}
		}
		b.Run(fmt.Sprintf("baseline-rand/n=%d", n), func(b *testing.B) {
			b.ReportAllocs()
			s := 0
			for b.Loop() {
				s += rand.IntN(n)
			}
			_ = s
		})
		for _, name := range []string{"rr", "p2c", "ring", "maglev"} {
			bal := ambassador.Balancers[name](eps)
			b.Run(fmt.Sprintf("%s/n=%d", name, n), func(b *testing.B) {
				b.ReportAllocs()
				var k uint64
				for b.Loop() {
					k += 0x9e3779b97f4a7c15
					bal.Done(bal.Pick(k))
				}
			})
		}
	}
}

// BenchmarkAcquire measures Cluster.Acquire+Release (snapshot load, pick, circuit breaker).
func BenchmarkAcquire(b *testing.B) {
	c, err := ambassador.NewCluster(ambassador.NewStatic(eps("a:1", "b:1", "c:1")...))
	if err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	for b.Loop() {
		l, err := c.Acquire(b.Context(), 0, nil)
		if err != nil {
			b.Fatal(err)
		}
		l.Release()
	}
}
