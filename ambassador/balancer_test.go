package ambassador_test

import (
	"fmt"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/podblocks/podblocks/ambassador"
	"github.com/podblocks/podblocks/ambassadortest"
)

func TestBalancerConformance(t *testing.T) {
	for _, tc := range []struct {
		name   string
		nb     ambassador.NewBalancer
		traits ambassadortest.BalancerTraits
	}{
		{"rr", ambassador.NewRoundRobin, ambassadortest.BalancerTraits{Tolerance: 0.01}},
		{"p2c", ambassador.NewP2C, ambassadortest.BalancerTraits{}},
		{"ring", ambassador.NewRingHash, ambassadortest.BalancerTraits{Hashing: true}},
		{"maglev", ambassador.NewMaglev, ambassadortest.BalancerTraits{Hashing: true, Tolerance: 0.05}},
	} {
		t.Run(tc.name, func(t *testing.T) { ambassadortest.TestBalancer(t, tc.nb, tc.traits) })
	}
}

func TestRoundRobinIsSmooth(t *testing.T) {
	b := ambassador.NewRoundRobin([]ambassador.Endpoint{{Addr: "a:1", Weight: 5}, {Addr: "b:1", Weight: 1}, {Addr: "c:1", Weight: 1}})
	names := "abc"
	var got string
	for range 14 {
		i := b.Pick(0)
		got += string(names[i])
		b.Done(i)
	}
	// nginx's smooth weighted round robin interleaves the heavy endpoint with the light ones.
	if diff := cmp.Diff("aabacaaaabacaa", got); diff != "" {
		t.Errorf("sequence (-want +got):\n%s", diff)
	}
}

func TestP2CPrefersLessLoaded(t *testing.T) {
	b := ambassador.NewP2C([]ambassador.Endpoint{{Addr: "a:1"}, {Addr: "b:1"}})
	// With two endpoints p2c always compares both, so requests held open (no Done) must spread
	// evenly: each pick goes to the endpoint with fewer in flight.
	counts := make([]int, 2)
	for range 10 {
		counts[b.Pick(0)]++
	}
	if diff := cmp.Diff([]int{5, 5}, counts); diff != "" {
		t.Errorf("in-flight spread (-want +got):\n%s", diff)
	}
	// Weighted: b has weight 3, so in-flight requests settle at 1:3.
	w := ambassador.NewP2C([]ambassador.Endpoint{{Addr: "a:1", Weight: 1}, {Addr: "b:1", Weight: 3}})
	counts = make([]int, 2)
	for range 40 {
		counts[w.Pick(0)]++
	}
	if counts[0] < 8 || counts[0] > 12 {
		t.Errorf("weighted in-flight spread %v, want about [10 30]", counts)
	}
}

func ExampleNewRoundRobin() {
	b := ambassador.NewRoundRobin([]ambassador.Endpoint{{Addr: "10.0.0.1:80", Weight: 2}, {Addr: "10.0.0.2:80"}})
	for range 6 {
		i := b.Pick(0)
		fmt.Print(i, " ")
		b.Done(i)
	}
	fmt.Println()
	// Output: 0 1 0 0 1 0
}
