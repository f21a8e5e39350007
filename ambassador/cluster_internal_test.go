package ambassador

import "testing"

// TestAcquireFallbackCounted: a lease Acquire gives to an untried endpoint the balancer did not
// pick (its picks all landed on tried ones) is in p2c's in-flight count while it is held, so p2c
// does not under-estimate that endpoint's load; Release takes it out again.
func TestAcquireFallbackCounted(t *testing.T) {
	c, err := NewCluster(NewStatic(Endpoint{Addr: "a:1"}, Endpoint{Addr: "b:1"}), WithBalancer(NewP2C))
	if err != nil {
		t.Fatal(err)
	}
	s := c.snap.Load()
	bal := s.bal.(*p2c)
	var a *Backend
	ib := -1
	for i, b := range s.pick {
		switch b.Addr {
		case "a:1":
			a = b
		case "b:1":
			ib = i
		}
	}
	var leases []Lease
	for range 200 {
		l, err := c.Acquire(t.Context(), 0, []*Backend{a})
		if err != nil {
			t.Fatal(err)
		}
		if l.Backend == a {
			t.Fatal("Acquire took the tried a:1 with b:1 free")
		}
		leases = append(leases, l)
	}
	if got := bal.inflight[ib].Load(); got != int64(len(leases)) {
		t.Errorf("p2c counts %d requests in flight on b:1, want the %d leases held", got, len(leases))
	}
	for _, l := range leases {
		l.Release()
	}
	for i := range bal.inflight {
		if got := bal.inflight[i].Load(); got != 0 {
			t.Errorf("p2c counts %d requests in flight on %s after every Release, want 0", got, s.pick[i].Addr)
		}
	}
}
