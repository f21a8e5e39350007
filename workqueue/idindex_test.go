package workqueue

import (
	"math/rand/v2"
	"testing"
)

// idIndex against a Go map under random puts and deletes of clustered, wrapping and sparse IDs.
func TestIDIndexMatchesMap(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	var x idIndex
	want := map[uint64]*entry{}
	next := uint64(1)
	for step := range 200000 {
		switch {
		case r.IntN(3) > 0 || len(want) == 0:
			id := next
			if r.IntN(10) == 0 {
				id = r.Uint64() // sparse
			}
			next++
			if _, ok := want[id]; ok {
				continue
			}
			e := &entry{id: id}
			x.put(e)
			want[id] = e
		default:
			// Delete one that is there, or (sometimes) one that is not.
			id := r.Uint64N(next + 10)
			for k := range want {
				if r.IntN(4) > 0 {
					id = k
				}
				break
			}
			x.del(id)
			delete(want, id)
		}
		if step%1000 == 0 || len(want) < 20 {
			if x.n != len(want) {
				t.Fatalf("step %d: %d entries, want %d", step, x.n, len(want))
			}
			for id, e := range want {
				if got := x.get(id); got != e {
					t.Fatalf("step %d: get(%d) = %v, want the entry put", step, id, got)
				}
			}
			for range 20 {
				id := r.Uint64()
				if _, ok := want[id]; !ok && x.get(id) != nil {
					t.Fatalf("step %d: get(%d) found an entry never put", step, id)
				}
			}
		}
	}
	for id := range want {
		x.del(id)
	}
	if x.n != 0 || len(x.slots) > 64 {
		t.Errorf("after deleting all: %d entries in %d slots", x.n, len(x.slots))
	}
}
