package ambassador

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"runtime"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	dto "github.com/prometheus/client_model/go"
	"go.uber.org/zap"
	"go.uber.org/zap/zaptest/observer"
)

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

// heldBuilds runs a cluster over the first n of a:1, b:1, c:1 and d:1, balanced by mk, whose
// balancer builds from Ready on each signal building, then wait for a token on hold. stop frees
// the builds still to come and stops Run.
func heldBuilds(t *testing.T, n int, mk NewBalancer, opts ...Option) (c *Cluster, building, hold chan struct{}, stop func()) {
	t.Helper()
	hold = make(chan struct{}, 16)
	building = make(chan struct{}, 16)
	var armed bool // written under c.mu; builds read it after taking c.mu (collect)
	slow := func(eps []Endpoint) Balancer {
		if armed {
			building <- struct{}{}
			<-hold
		}
		return mk(eps)
	}
	var e []Endpoint
	for _, a := range []string{"a:1", "b:1", "c:1", "d:1"}[:n] {
		e = append(e, Endpoint{Addr: a})
	}
	c, err := NewCluster(NewStatic(e...), append(opts, WithBalancer(slow))...)
	if err != nil {
		t.Fatal(err)
	}
	stopRun := runCluster(t, c)
	c.mu.Lock()
	armed = true
	c.mu.Unlock()
	return c, building, hold, func() {
		for range cap(hold) {
			hold <- struct{}{}
		}
		stopRun()
	}
}

// runCluster runs c until the returned stop, which waits for Run's return; it returns once c is
// Ready.
func runCluster(t *testing.T, c *Cluster) (stop func()) {
	t.Helper()
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan error, 1)
	go func() { done <- c.Run(ctx) }()
	<-c.Ready()
	return func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Run = %v, want nil", err)
		}
	}
}

// TestPanicGaugeFollowsSnapshot: the panic gauge and the "panic mode" log go with the snapshot
// Acquire and Status use: while Run builds the balancer over every endpoint, neither says panic
// yet; once the build is in, both do, as Status does.
func TestPanicGaugeFollowsSnapshot(t *testing.T) {
	logs, observed := observer.New(zap.WarnLevel)
	c, building, hold, stop := heldBuilds(t, 4, NewRoundRobin, WithLogger(zap.New(logs)),
		WithOutlier(Outlier{ConsecutiveFailures: 1, MaxEjectionPercent: 50}), WithPanicThreshold(60))
	defer stop()
	gauge := func() float64 {
		var m dto.Metric
		if err := c.metrics.panic.Write(&m); err != nil {
			t.Fatal(err)
		}
		return m.GetGauge().GetValue()
	}
	s := c.snap.Load()
	c.Report(s.pick[0], false, 0) // 3 of 4 available: no panic
	<-building
	hold <- struct{}{}
	c.Report(s.pick[1], false, 0) // 2 of 4 available, under 60%: panic
	<-building                    // Run builds the balancer over all four
	if _, p := c.Status(); p {
		t.Fatal("Status reports panic mode before Run's build is in")
	}
	if g := gauge(); g != 0 {
		t.Errorf("podblocks_ambassador_cluster_panic = %v while Status reports panic mode off, want 0", g)
	}
	if n := observed.FilterMessageSnippet("panic mode").Len(); n != 0 {
		t.Errorf("%d \"panic mode\" logs while Status reports panic mode off, want 0", n)
	}
	hold <- struct{}{}
	deadline := time.Now().Add(10 * time.Second)
	for {
		if _, p := c.Status(); p && gauge() == 1 && observed.FilterMessageSnippet("panic mode").Len() == 1 {
			break
		}
		if time.Now().After(deadline) {
			_, p := c.Status()
			t.Fatalf("10s after the build was let go: Status panic %v, gauge %v, %d \"panic mode\" logs; want true, 1, 1",
				p, gauge(), observed.FilterMessageSnippet("panic mode").Len())
		}
		time.Sleep(time.Millisecond)
	}
}

// TestAcquireDuringRebuildPrefersTriedToEjected: while Run builds the balancer after an
// ejection, a retry that has tried every endpoint still available goes to one of those, not to
// the endpoint just ejected (which the balancer being replaced may pick).
func TestAcquireDuringRebuildPrefersTriedToEjected(t *testing.T) {
	c, building, _, stop := heldBuilds(t, 2, NewRingHash,
		WithOutlier(Outlier{ConsecutiveFailures: 1, MaxEjectionPercent: 50}), WithPanicThreshold(0))
	defer stop()
	s := c.snap.Load()
	a, b := s.pick[0], s.pick[1]
	c.Report(a, false, 0)
	<-building
	toEjected := 0
	for k := range uint64(1000) {
		l, err := c.Acquire(t.Context(), k*0x9e3779b97f4a7c15, []*Backend{b})
		if err != nil {
			t.Fatal(err)
		}
		if l.Backend == a {
			toEjected++
		}
		l.Release()
	}
	if toEjected > 0 {
		t.Errorf("%d of 1000 retries (b:1 tried) went to the ejected a:1 while Run builds, want 0", toEjected)
	}
	tried := []*Backend{b}
	if n := testing.AllocsPerRun(100, func() {
		l, _ := c.Acquire(t.Context(), 7, tried)
		l.Release()
	}); n != 0 {
		t.Errorf("Acquire with every endpoint tried or ejected: %v allocs, want 0", n)
	}
}

// overlapCheck wraps mk to count builds running at once; max reports the most seen.
type overlapCheck struct {
	now, most atomic.Int32
}

func (o *overlapCheck) wrap(mk NewBalancer) NewBalancer {
	return func(eps []Endpoint) Balancer {
		n := o.now.Add(1)
		for m := o.most.Load(); n > m && !o.most.CompareAndSwap(m, n); m = o.most.Load() {
		}
		defer o.now.Add(-1)
		runtime.Gosched() // widen the window another build would have to overlap in
		return mk(eps)
	}
}

// churnCluster returns a cluster over eight endpoints whose health checks fail at random while
// churn is true, which ejects on every failure and readmits within milliseconds, its builds
// counted by o.
func churnCluster(t *testing.T, src *Static, churn *atomic.Bool, o *overlapCheck) *Cluster {
	t.Helper()
	check := func(ctx context.Context, ep Endpoint) error {
		if churn.Load() && rand.IntN(3) == 0 {
			return errors.New("down")
		}
		return nil
	}
	c, err := NewCluster(src, WithBalancer(o.wrap(NewRingHash)), WithPanicThreshold(50),
		WithHealthCheck(HealthCheck{Check: check, Interval: time.Millisecond, Timeout: time.Second, HealthyThreshold: 1, UnhealthyThreshold: 1}),
		WithOutlier(Outlier{ConsecutiveFailures: 1, BaseEjection: 2 * time.Millisecond, MaxEjection: 5 * time.Millisecond, MaxEjectionPercent: 100}),
		WithCircuitBreaker(4, 4))
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// churnRequests runs g goroutines that Acquire, Report at random and Release until stop is
// closed, retrying over up to three tried endpoints.
func churnRequests(wg *sync.WaitGroup, c *Cluster, g int, stop <-chan struct{}) {
	for g := range g {
		wg.Go(func() {
			r := rand.New(rand.NewPCG(uint64(g), 1))
			var tried []*Backend
			for {
				select {
				case <-stop:
					return
				default:
				}
				l, err := c.Acquire(context.Background(), r.Uint64(), tried)
				if err != nil {
					tried = tried[:0]
					continue
				}
				c.Report(l.Backend, r.IntN(2) == 0, time.Microsecond)
				l.Release()
				if len(tried) < 3 {
					tried = append(tried, l.Backend)
				} else {
					tried = tried[:0]
				}
			}
		})
	}
}

func eightEndpoints() []Endpoint {
	e := make([]Endpoint, 8)
	for i := range e {
		e[i] = Endpoint{Addr: "h" + strconv.Itoa(i) + ":1"}
	}
	return e
}

// TestClusterChurnSettles: ejections, readmissions, health verdicts and Source updates racing
// with Run's builds and Acquire, no two builds at once; once the churn stops, every endpoint is
// back, not out, and in the snapshot's pick set, out of panic mode.
func TestClusterChurnSettles(t *testing.T) {
	addrs := eightEndpoints()
	src := NewStatic(addrs...)
	var churn atomic.Bool
	churn.Store(true)
	var o overlapCheck
	c := churnCluster(t, src, &churn, &o)
	defer runCluster(t, c)()

	var wg sync.WaitGroup
	stop := make(chan struct{})
	churnRequests(&wg, c, 4, stop)
	wg.Go(func() {
		r := rand.New(rand.NewPCG(9, 9))
		for {
			select {
			case <-stop:
				return
			case <-time.After(time.Millisecond):
			}
			var set []Endpoint
			for _, e := range addrs {
				if r.IntN(4) != 0 {
					set = append(set, e)
				}
			}
			src.Set(set...)
		}
	})
	time.Sleep(2 * time.Second)
	close(stop)
	wg.Wait()
	src.Set(addrs...)
	churn.Store(false)

	// Settle: every check healthy, every ejection over, Run's last build in.
	deadline := time.Now().Add(10 * time.Second)
	for {
		c.mu.Lock()
		s := c.snap.Load()
		var bad []string
		if c.dirty || len(c.backends) != len(addrs) || len(s.pick) != len(addrs) || s.panic {
			bad = append(bad, fmt.Sprintf("dirty %v, %d endpoints, snapshot picks %d, panic %v; want false, %d, %d, false",
				c.dirty, len(c.backends), len(s.pick), s.panic, len(addrs), len(addrs)))
		}
		for _, b := range c.backends {
			switch {
			case !b.healthy || b.ejected:
				bad = append(bad, b.Addr+" unhealthy or ejected")
			case b.out.Load():
				bad = append(bad, b.Addr+" healthy and not ejected but out")
			case !slices.Contains(s.pick, b):
				bad = append(bad, b.Addr+" available but not in the snapshot's pick set")
			}
		}
		c.mu.Unlock()
		if len(bad) == 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("10s after the churn stopped: %v", bad)
		}
		time.Sleep(10 * time.Millisecond)
	}
	if m := o.most.Load(); m != 1 {
		t.Errorf("up to %d balancer builds ran at once, want 1", m)
	}
}

// TestBuildsNeverOverlapAcrossRunEnd: an ejection or health verdict as Run's loop ends (its
// rebuild left to Run's loop, or made by changed itself once Run has let go) never builds while
// another build runs, so a plain store keeps the newest snapshot.
func TestBuildsNeverOverlapAcrossRunEnd(t *testing.T) {
	for i := range 20 {
		var churn atomic.Bool
		churn.Store(true)
		var o overlapCheck
		c := churnCluster(t, NewStatic(eightEndpoints()...), &churn, &o)
		stopRun := runCluster(t, c)
		var wg sync.WaitGroup
		stop := make(chan struct{})
		churnRequests(&wg, c, 2, stop)
		time.Sleep(time.Duration(rand.IntN(20)) * time.Millisecond)
		// Run's loop ends while requests eject, and they go on ejecting after Run.
		stopRun()
		time.Sleep(5 * time.Millisecond)
		close(stop)
		wg.Wait()
		if m := o.most.Load(); m != 1 {
			t.Fatalf("round %d: up to %d balancer builds ran at once, want 1", i, m)
		}
	}
}

// TestPanicModeLoggedOnChangeOnly: "panic mode" is logged when the cluster enters it and when it
// leaves it, not again on every rebuild of the balancer while it stays in it (here, three
// changes of the endpoints' weights).
func TestPanicModeLoggedOnChangeOnly(t *testing.T) {
	logs, observed := observer.New(zap.InfoLevel)
	weighted := func(w int, addrs ...string) []Endpoint {
		eps := make([]Endpoint, len(addrs))
		for i, a := range addrs {
			eps[i] = Endpoint{Addr: a, Weight: w}
		}
		return eps
	}
	src := NewStatic(weighted(1, "a:1", "b:1", "c:1", "d:1")...)
	c, err := NewCluster(src, WithLogger(zap.New(logs)), WithPanicThreshold(60),
		WithOutlier(Outlier{ConsecutiveFailures: 1, MaxEjectionPercent: 50, BaseEjection: time.Hour}))
	if err != nil {
		t.Fatal(err)
	}
	defer runCluster(t, c)()
	// rebuilt waits for a snapshot other than s, and returns it.
	rebuilt := func(s *snapshot) *snapshot {
		t.Helper()
		deadline := time.Now().Add(10 * time.Second)
		for c.snap.Load() == s {
			if time.Now().After(deadline) {
				t.Fatal("no rebuild in 10s")
			}
			time.Sleep(time.Millisecond)
		}
		return c.snap.Load()
	}
	s := c.snap.Load()
	c.Report(s.all[0], false, 0) // a:1 ejected: 3 of 4 available
	s = rebuilt(s)
	c.Report(s.all[1], false, 0) // b:1 ejected: 2 of 4, under 60%
	for s = rebuilt(s); !s.panic; s = rebuilt(s) {
	}
	for w := 2; w <= 4; w++ {
		src.Set(weighted(w, "a:1", "b:1", "c:1", "d:1")...)
		for s = rebuilt(s); s.pick[0].Weight != w; s = rebuilt(s) {
		}
		if !s.panic {
			t.Fatalf("weights %d: out of panic mode with a:1 and b:1 ejected", w)
		}
	}
	src.Set(weighted(1, "c:1", "d:1")...) // the ejected ones gone: 2 of 2 available
	for s = rebuilt(s); s.panic; s = rebuilt(s) {
	}
	var got []string
	for _, e := range observed.FilterMessageSnippet("panic mode").All() {
		got = append(got, e.Level.String()+" "+e.Message)
	}
	want := []string{"warn panic mode: balancing over all endpoints", "info panic mode over: balancing over the available endpoints"}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("panic mode logs (-want +got):\n%s", diff)
	}
}

// TestSourceChangeBuildsOutsideLock: Run builds the balancer for a change of its Source's set
// outside the cluster's lock, as it does for an ejection: while the build runs, Status and an
// ejecting Report do not wait for it, and the endpoint the change removed takes no request that
// another can take.
func TestSourceChangeBuildsOutsideLock(t *testing.T) {
	c, building, hold, stop := heldBuilds(t, 4, NewRoundRobin, WithPanicThreshold(0),
		WithOutlier(Outlier{ConsecutiveFailures: 1, MaxEjectionPercent: 50}))
	defer stop()
	old := c.snap.Load()
	removed := old.all[3] // d:1
	c.src.(*Static).Set(Endpoint{Addr: "a:1"}, Endpoint{Addr: "b:1"}, Endpoint{Addr: "c:1"})
	select {
	case <-building:
	case <-time.After(10 * time.Second):
		t.Fatal("Run did not start the build for the new set in 10s")
	}
	// The build is held: what needs the lock must not wait for it.
	unwaited := func(what string, f func()) {
		t.Helper()
		done := make(chan struct{})
		go func() {
			defer close(done)
			f()
		}()
		select {
		case <-done:
		case <-time.After(10 * time.Second):
			hold <- struct{}{}
			<-done
			t.Fatalf("%s waited 10s for the balancer build of a source change", what)
		}
	}
	unwaited("Status", func() { c.Status() })
	unwaited("an ejecting Report", func() { c.Report(old.all[0], false, 0) }) // ejects a:1
	if c.snap.Load() != old {
		t.Fatal("a new snapshot is in while its build is held")
	}
	for k := range uint64(300) {
		l, err := c.Acquire(t.Context(), k, nil)
		if err != nil {
			t.Fatal(err)
		}
		l.Release()
		if l.Backend == removed {
			t.Fatalf("key %d went to d:1, removed from the source, with b:1 and c:1 available", k)
		}
	}
	hold <- struct{}{} // the set's build
	hold <- struct{}{} // the ejection's
	deadline := time.Now().Add(10 * time.Second)
	for {
		s := c.snap.Load()
		var addrs []string
		for _, b := range s.pick {
			addrs = append(addrs, b.Addr)
		}
		if slices.Equal(addrs, []string{"b:1", "c:1"}) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("10s after the builds were let go, balancing over %v, want [b:1 c:1]", addrs)
		}
		time.Sleep(time.Millisecond)
	}
}
