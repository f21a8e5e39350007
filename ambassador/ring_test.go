package ambassador_test

import (
	"fmt"
	"slices"
	"testing"

	"github.com/podblocks/podblocks/ambassador"
)

// ringConfig is n endpoints 10.0.I.J:80, endpoint i of weight weight(i).
func ringConfig(n int, weight func(i int) int) []ambassador.Endpoint {
	eps := make([]ambassador.Endpoint, n)
	for i := range eps {
		eps[i] = ambassador.Endpoint{Addr: fmt.Sprintf("10.0.%d.%d:80", i/250, i%250+1), Weight: weight(i)}
	}
	return eps
}

// ringKeys are 1<<16 keys spread over the ring.
func ringKeys() func(yield func(uint64) bool) {
	return func(yield func(uint64) bool) {
		for k := range uint64(1 << 16) {
			key := k * 0x9e3779b97f4a7c15
			if !yield(key ^ key>>29) {
				return
			}
		}
	}
}

// ringDigest folds the ring's picks for ringKeys into one number (FNV-1a).
func ringDigest(b ambassador.Balancer) uint64 {
	h := uint64(14695981039346656037)
	for key := range ringKeys() {
		h = (h ^ uint64(b.Pick(key))) * 1099511628211
	}
	return h
}

var ringPinConfigs = []struct {
	name string
	eps  []ambassador.Endpoint
	want uint64 // ringDigest of e8c13de's ring over eps
}{
	{"3x1", ringConfig(3, func(int) int { return 1 }), 0xda4392f1d19bcc8b},
	{"5 mixed", ringConfig(5, func(i int) int { return []int{0, 2, 7, 50, 100}[i] }), 0x62223e5c3a22e651},
	{"3x33", ringConfig(3, func(int) int { return 33 }), 0x2dda8d25650cd52f},
	{"20x100", ringConfig(20, func(int) int { return 100 }), 0x7ce45bb3e27230fe},
	{"100x20..100", ringConfig(100, func(i int) int { return 20 + i*80/99 }), 0x6ab56b0b00d2f09b},
	{"100x100 above the cap", ringConfig(100, func(int) int { return 100 }), 0x5ece680f529b580f},
}

// TestRingHashPlacementPinned: the ring places keys as it did before weights were bounded and the
// ring was radix-sorted (e8c13de), so an upgrade moves no key; the digests were computed with that
// code.
func TestRingHashPlacementPinned(t *testing.T) {
	for _, c := range ringPinConfigs {
		if got := ringDigest(ambassador.NewRingHash(c.eps)); got != c.want {
			t.Errorf("%s: ring placement digest %#x, want %#x (e8c13de's)", c.name, got, c.want)
		}
	}
}

// TestRingHashEjectionMovesNoSurvivorKey: removing one endpoint moves only its own keys: every key
// a survivor had stays on it.
func TestRingHashEjectionMovesNoSurvivorKey(t *testing.T) {
	for _, c := range []struct {
		name string
		eps  []ambassador.Endpoint
	}{
		{"3x33", ringConfig(3, func(int) int { return 33 })},
		{"20x100", ringConfig(20, func(int) int { return 100 })},
		{"5x1000", ringConfig(5, func(int) int { return 1000 })},
		{"100x20..60", ringConfig(100, func(i int) int { return 20 + i*40/99 })},
	} {
		gone := len(c.eps) / 2
		moved, kept := survivorMoves(c.eps, gone)
		if moved != 0 {
			t.Errorf("%s: ejecting %s moved %d of the survivors' %d keys, want 0", c.name, c.eps[gone].Addr, moved, kept)
		}
	}
}

// survivorMoves counts, of ringKeys, those a ring over eps gives to an endpoint other than
// eps[gone] (kept), and of them those a ring over eps without eps[gone] gives to another endpoint
// (moved).
func survivorMoves(eps []ambassador.Endpoint, gone int) (moved, kept int) {
	full := ambassador.NewRingHash(eps)
	rest := slices.Delete(slices.Clone(eps), gone, gone+1)
	after := ambassador.NewRingHash(rest)
	for key := range ringKeys() {
		before := full.Pick(key)
		if before == gone {
			continue
		}
		kept++
		if eps[before].Addr != rest[after.Pick(key)].Addr {
			moved++
		}
	}
	return moved, kept
}
