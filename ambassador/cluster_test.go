package ambassador_test

import (
	"context"
	"errors"
	"sync"
	"sync/atomic"
	"testing"
	"testing/synctest"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/podblocks/podblocks/ambassador"
	"github.com/podblocks/podblocks/ambassadortest"
)

func eps(addrs ...string) []ambassador.Endpoint {
	out := make([]ambassador.Endpoint, len(addrs))
	for i, a := range addrs {
		out[i] = ambassador.Endpoint{Addr: a}
	}
	return out
}

// available returns the addresses taking traffic.
func available(c *ambassador.Cluster) []string {
	st, _ := c.Status()
	var out []string
	for _, e := range st {
		if e.Available {
			out = append(out, e.Addr)
		}
	}
	return out
}

func pickAll(t *testing.T, c *ambassador.Cluster, n int) map[string]int {
	t.Helper()
	got := map[string]int{}
	for range n {
		l, err := c.Acquire(context.Background(), 0, nil)
		if err != nil {
			t.Fatalf("Acquire: %v", err)
		}
		got[l.Backend.Addr]++
		l.Release()
	}
	return got
}

func TestOutlierEjectionAndReadmission(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		src := ambassador.NewStatic(eps("a:1", "b:1", "c:1")...)
		c, err := ambassador.NewCluster(src, ambassador.WithOutlier(ambassador.Outlier{
			ConsecutiveFailures: 3, BaseEjection: 10 * time.Second, MaxEjection: 25 * time.Second, MaxEjectionPercent: 50}))
		if err != nil {
			t.Fatal(err)
		}
		ctx, cancel := context.WithCancel(t.Context())
		done := make(chan error, 1)
		go func() { done <- c.Run(ctx) }()
		<-c.Ready()
		b := backendOf(t, c, "b:1")

		fail := func() {
			for range 3 {
				c.Report(b, false, time.Millisecond)
			}
		}
		// Two failures then a success do not eject: failures must be consecutive.
		c.Report(b, false, 0)
		c.Report(b, false, 0)
		c.Report(b, true, 0)
		c.Report(b, false, 0)
		if diff := cmp.Diff([]string{"a:1", "b:1", "c:1"}, available(c)); diff != "" {
			t.Fatalf("(-want +got):\n%s", diff)
		}
		fail()
		if diff := cmp.Diff([]string{"a:1", "c:1"}, available(c)); diff != "" {
			t.Fatalf("after 3 failures (-want +got):\n%s", diff)
		}
		if got := pickAll(t, c, 100); got["b:1"] != 0 {
			t.Errorf("ejected endpoint got %d picks", got["b:1"])
		}
		// First ejection lasts BaseEjection.
		time.Sleep(10*time.Second - time.Millisecond)
		synctest.Wait()
		if len(available(c)) != 2 {
			t.Fatal("readmitted before the ejection time")
		}
		time.Sleep(2 * time.Millisecond)
		synctest.Wait()
		if diff := cmp.Diff([]string{"a:1", "b:1", "c:1"}, available(c)); diff != "" {
			t.Fatalf("after the ejection time (-want +got):\n%s", diff)
		}
		// The second ejection lasts twice as long, the third is capped at MaxEjection.
		for _, d := range []time.Duration{20 * time.Second, 25 * time.Second} {
			fail()
			time.Sleep(d - time.Millisecond)
			synctest.Wait()
			if len(available(c)) != 2 {
				t.Fatalf("readmitted before %v", d)
			}
			time.Sleep(2 * time.Millisecond)
			synctest.Wait()
			if len(available(c)) != 3 {
				t.Fatalf("not readmitted after %v", d)
			}
		}
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Run = %v, want nil", err)
		}
	})
}

func backendOf(t *testing.T, c *ambassador.Cluster, addr string) *ambassador.Backend {
	t.Helper()
	for i := range uint64(1000) {
		l, err := c.Acquire(context.Background(), i*0x9e3779b97f4a7c15, nil) // keys vary for hashing balancers
		if err != nil {
			t.Fatal(err)
		}
		l.Release()
		if l.Backend.Addr == addr {
			return l.Backend
		}
	}
	t.Fatalf("no backend %s", addr)
	return nil
}

// TestMaxEjectionPercentAndPanic: ejections stop at the maximum ejection percentage, and the
// cluster balances over every endpoint once too few are available: whether Run runs (its loop
// rebuilds the balancer), has not started, or has ended (the ejecting Report rebuilds it).
func TestMaxEjectionPercentAndPanic(t *testing.T) {
	for _, run := range []string{"without Run", "with Run", "after Run"} {
		t.Run(run, func(t *testing.T) {
			c, err := ambassador.NewCluster(ambassador.NewStatic(eps("a:1", "b:1", "c:1", "d:1")...),
				ambassador.WithOutlier(ambassador.Outlier{ConsecutiveFailures: 1, MaxEjectionPercent: 50}),
				ambassador.WithPanicThreshold(60))
			if err != nil {
				t.Fatal(err)
			}
			if run != "without Run" {
				ctx, cancel := context.WithCancel(t.Context())
				done := make(chan error, 1)
				go func() { done <- c.Run(ctx) }()
				stop := func() {
					cancel()
					if err := <-done; err != nil {
						t.Errorf("Run = %v, want nil", err)
					}
				}
				<-c.Ready()
				if run == "after Run" {
					stop()
				} else {
					defer stop()
				}
			}
			for _, a := range []string{"a:1", "b:1", "c:1"} {
				c.Report(backendOf(t, c, a), false, 0)
			}
			// At most 50% (2 of 4) are ejected.
			st, _ := c.Status()
			ejected := 0
			for _, e := range st {
				if e.Ejected {
					ejected++
				}
			}
			if ejected != 2 {
				t.Errorf("%d ejected, want 2 (max 50%%)", ejected)
			}
			// 2 of 4 available is below the 60% panic threshold: balance over all four, once the
			// balancer is rebuilt.
			if !ambassadortest.WaitFor(t.Context(), 10*time.Second, func() bool { _, p := c.Status(); return p }) {
				t.Error("panic mode off with 50% available and a 60% threshold")
			}
			if got := pickAll(t, c, 400); len(got) != 4 {
				t.Errorf("panic mode picks %v, want all four endpoints", got)
			}
		})
	}
}

func TestActiveHealthCheck(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		var mu sync.Mutex
		down := map[string]bool{}
		check := func(ctx context.Context, ep ambassador.Endpoint) error {
			mu.Lock()
			defer mu.Unlock()
			if down[ep.Addr] {
				return errors.New("down")
			}
			return nil
		}
		setDown := func(addr string, d bool) {
			mu.Lock()
			down[addr] = d
			mu.Unlock()
		}
		c, err := ambassador.NewCluster(ambassador.NewStatic(eps("a:1", "b:1")...),
			ambassador.WithHealthCheck(ambassador.HealthCheck{Check: check, Interval: time.Second,
				HealthyThreshold: 2, UnhealthyThreshold: 3}))
		if err != nil {
			t.Fatal(err)
		}
		ctx, cancel := context.WithCancel(t.Context())
		done := make(chan error, 1)
		go func() { done <- c.Run(ctx) }()
		<-c.Ready()
		synctest.Wait() // the checks at t=0 have passed
		setDown("b:1", true)
		// Checks at t=0 (passed), 1s, 2s, 3s: the third failure is at 3s.
		time.Sleep(2500 * time.Millisecond)
		synctest.Wait()
		if len(available(c)) != 2 {
			t.Fatal("unhealthy after 2 failures, want 3")
		}
		time.Sleep(time.Second)
		synctest.Wait()
		if diff := cmp.Diff([]string{"a:1"}, available(c)); diff != "" {
			t.Fatalf("after 3 failures (-want +got):\n%s", diff)
		}
		setDown("b:1", false)
		time.Sleep(time.Second) // one success at 4s
		synctest.Wait()
		if len(available(c)) != 1 {
			t.Fatal("healthy after 1 success, want 2")
		}
		time.Sleep(time.Second)
		synctest.Wait()
		if len(available(c)) != 2 {
			t.Fatal("not healthy after 2 successes")
		}
		// Removing an endpoint stops its checks; adding one starts them.
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Run = %v", err)
		}
	})
}

func TestCircuitBreaker(t *testing.T) {
	c, err := ambassador.NewCluster(ambassador.NewStatic(eps("a:1")...), ambassador.WithCircuitBreaker(2, 1))
	if err != nil {
		t.Fatal(err)
	}
	l1, err1 := c.Acquire(t.Context(), 0, nil)
	l2, err2 := c.Acquire(t.Context(), 0, nil)
	if err1 != nil || err2 != nil {
		t.Fatalf("Acquire under the limit: %v %v", err1, err2)
	}
	// The third waits (pending); a fourth is over the pending limit and fails fast.
	got := make(chan error, 1)
	go func() {
		l, err := c.Acquire(t.Context(), 0, nil)
		if err == nil {
			l.Release()
		}
		got <- err
	}()
	deadline := time.Now().Add(10 * time.Second)
	for l1.Backend.Pending() != 1 {
		if time.Now().After(deadline) {
			t.Fatal("the third Acquire never became pending")
		}
		time.Sleep(time.Millisecond)
	}
	if _, err := c.Acquire(t.Context(), 0, nil); !errors.Is(err, ambassador.ErrOverloaded) {
		t.Fatalf("Acquire over the pending limit = %v, want ErrOverloaded", err)
	}
	l1.Release()
	if err := <-got; err != nil {
		t.Errorf("pending Acquire = %v after a release, want nil", err)
	}
	l2.Release()
}

func TestEndpointChangesKeepBackends(t *testing.T) {
	src := ambassador.NewStatic(eps("a:1", "b:1")...)
	c, err := ambassador.NewCluster(src)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan error, 1)
	go func() { done <- c.Run(ctx) }()
	<-c.Ready()
	l, err := c.Acquire(ctx, 0, nil)
	if err != nil {
		t.Fatal(err)
	}
	held := l.Backend.Addr
	src.Set(ambassador.Endpoint{Addr: "c:1"})
	deadline := time.Now().Add(10 * time.Second)
	for !cmp.Equal([]string{"c:1"}, available(c)) {
		if time.Now().After(deadline) {
			t.Fatalf("available = %v, want [c:1]", available(c))
		}
		time.Sleep(5 * time.Millisecond)
	}
	// The lease on the removed endpoint is still valid and releases cleanly (it drained).
	if l.Backend.Active() != 1 {
		t.Errorf("removed endpoint %s has %d active, want 1", held, l.Backend.Active())
	}
	l.Release()
	if got := pickAll(t, c, 10); got["c:1"] != 10 {
		t.Errorf("picks %v, want all on c:1", got)
	}
	cancel()
	<-done
}

// TestSkippedEjectionTriedAgain: an endpoint whose ejection the maximum ejection percentage
// skipped is ejected once it fails as many times again after the way is clear.
func TestSkippedEjectionTriedAgain(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		c, err := ambassador.NewCluster(ambassador.NewStatic(eps("a:1", "b:1")...),
			ambassador.WithOutlier(ambassador.Outlier{ConsecutiveFailures: 3, BaseEjection: 300 * time.Millisecond, MaxEjectionPercent: 50}),
			ambassador.WithPanicThreshold(0))
		if err != nil {
			t.Fatal(err)
		}
		ctx, cancel := context.WithCancel(t.Context())
		done := make(chan error, 1)
		go func() { done <- c.Run(ctx) }()
		defer func() {
			cancel()
			if err := <-done; err != nil {
				t.Errorf("Run: %v", err)
			}
		}()
		<-c.Ready()
		a, b := backendOf(t, c, "a:1"), backendOf(t, c, "b:1")
		fail := func(b *ambassador.Backend, n int) {
			for range n {
				c.Report(b, false, time.Millisecond)
			}
		}
		fail(a, 3)
		fail(b, 3) // skipped: 2 of 2 ejected is over 50%
		if diff := cmp.Diff([]string{"b:1"}, available(c)); diff != "" {
			t.Fatalf("a ejected, b skipped (-want +got):\n%s", diff)
		}
		time.Sleep(301 * time.Millisecond)
		synctest.Wait()
		if diff := cmp.Diff([]string{"a:1", "b:1"}, available(c)); diff != "" {
			t.Fatalf("a readmitted (-want +got):\n%s", diff)
		}
		fail(b, 3)
		if diff := cmp.Diff([]string{"a:1"}, available(c)); diff != "" {
			t.Fatalf("b failing again once a is back (-want +got):\n%s", diff)
		}
	})
}

func TestNewClusterRefusesNegativeCircuitBreaker(t *testing.T) {
	for _, lim := range [][2]int{{-5, -5}, {-1, 0}, {0, -1}} {
		_, err := ambassador.NewCluster(ambassador.NewStatic(), ambassador.WithCircuitBreaker(lim[0], lim[1]))
		if ce := (*ambassador.ConfigError)(nil); !errors.As(err, &ce) {
			t.Errorf("WithCircuitBreaker(%d, %d): error %v, want a *ConfigError", lim[0], lim[1], err)
		}
	}
}

// TestAcquireAvoidsTried: with a hashing balancer, a retry (the failed endpoint in tried) goes to
// another endpoint for every key, however the hashes fall, and the same one for the same key.
func TestAcquireAvoidsTried(t *testing.T) {
	for _, name := range []string{"ring", "maglev", "rr", "p2c"} {
		t.Run(name, func(t *testing.T) {
			c, err := ambassador.NewCluster(ambassador.NewStatic(eps("a:1", "b:1")...), ambassador.WithBalancer(ambassador.Balancers[name]))
			if err != nil {
				t.Fatal(err)
			}
			a := backendOf(t, c, "a:1")
			for k := range uint64(2000) {
				key := k * 0x9e3779b97f4a7c15
				l, err := c.Acquire(t.Context(), key, []*ambassador.Backend{a})
				if err != nil {
					t.Fatal(err)
				}
				l.Release()
				if l.Backend == a {
					t.Fatalf("key %#x: retry went to the tried endpoint a:1, with b:1 free", key)
				}
			}
			// Every endpoint tried: one of them still takes the request.
			l, err := c.Acquire(t.Context(), 1, []*ambassador.Backend{a, backendOf(t, c, "b:1")})
			if err != nil {
				t.Fatalf("Acquire with every endpoint tried: %v", err)
			}
			l.Release()
		})
	}
}

// TestEjectLeavesRebuildToRun: the Report that ejects an endpoint does not wait for the balancer
// to be rebuilt (Run's loop rebuilds it, and outside the cluster's lock, so Status does not wait
// either), and from the moment Report returns, Acquire gives the ejected endpoint no request.
func TestEjectLeavesRebuildToRun(t *testing.T) {
	building := make(chan struct{}, 1)
	release := make(chan struct{})
	free := sync.OnceFunc(func() { close(release) })
	var rebuilt atomic.Pointer[countingBalancer] // the balancer built after the ejection
	// slow is a round robin whose builds over fewer than the three endpoints (the one after the
	// ejection) wait for release.
	slow := func(eps []ambassador.Endpoint) ambassador.Balancer {
		if len(eps) < 3 {
			select {
			case building <- struct{}{}:
			default:
			}
			<-release
			b := &countingBalancer{Balancer: ambassador.NewRoundRobin(eps)}
			for _, e := range eps {
				b.addrs = append(b.addrs, e.Addr)
			}
			rebuilt.Store(b)
			return b
		}
		return ambassador.NewRoundRobin(eps)
	}
	c, err := ambassador.NewCluster(ambassador.NewStatic(eps("a:1", "b:1", "c:1")...), ambassador.WithBalancer(slow),
		ambassador.WithOutlier(ambassador.Outlier{ConsecutiveFailures: 1, MaxEjectionPercent: 50}))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan error, 1)
	go func() { done <- c.Run(ctx) }()
	reported := make(chan struct{})
	defer func() {
		free()
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Run = %v, want nil", err)
		}
		<-reported
	}()
	<-c.Ready()
	b := backendOf(t, c, "b:1")
	go func() {
		defer close(reported)
		c.Report(b, false, time.Millisecond)
	}()
	select {
	case <-reported:
	case <-time.After(10 * time.Second):
		t.Fatal("the Report ejecting b:1 still waits, 10s on, for the balancer rebuild")
	}
	if got := pickAll(t, c, 300); got["b:1"] != 0 {
		t.Errorf("after the Report ejecting it, b:1 got %d of 300 picks, want 0 (picks %v)", got["b:1"], got)
	}
	select {
	case <-building:
	case <-time.After(10 * time.Second):
		t.Fatal("Run did not start the rebuild in 10s")
	}
	status := make(chan []ambassador.EndpointStatus, 1)
	go func() {
		st, _ := c.Status()
		status <- st
	}()
	select {
	case st := <-status:
		if len(st) != 3 || !st[1].Ejected || st[1].Available {
			t.Errorf("Status during the rebuild: %+v, want b:1 ejected and not available", st)
		}
	case <-time.After(10 * time.Second):
		free()
		<-status
		t.Fatal("Status waited 10s for Run's rebuild")
	}
	free()
	// The rebuilt balancer, over a:1 and c:1, takes the picks once Run has it in.
	deadline := time.Now().Add(10 * time.Second)
	for {
		got := pickAll(t, c, 300)
		if got["b:1"] != 0 {
			t.Fatalf("after the rebuild was let go, b:1 got %d of 300 picks, want 0 (picks %v)", got["b:1"], got)
		}
		if r := rebuilt.Load(); r != nil && r.picks.Load() > 0 {
			if diff := cmp.Diff([]string{"a:1", "c:1"}, r.addrs); diff != "" {
				t.Errorf("rebuilt balancer's endpoints (-want +got):\n%s", diff)
			}
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("10s after the rebuild was let go, Acquire does not pick with the rebuilt balancer (built: %v)", rebuilt.Load() != nil)
		}
		time.Sleep(time.Millisecond)
	}
	if diff := cmp.Diff([]string{"a:1", "c:1"}, available(c)); diff != "" {
		t.Errorf("after the rebuild (-want +got):\n%s", diff)
	}
	if got := pickAll(t, c, 300); got["b:1"] != 0 || got["a:1"] != 150 || got["c:1"] != 150 {
		t.Errorf("after the rebuild, 300 picks went %v, want a:1 and c:1 150 each", got)
	}
}

// countingBalancer counts the picks of the Balancer it wraps, built over addrs.
type countingBalancer struct {
	ambassador.Balancer
	addrs []string
	picks atomic.Int64
}

func (b *countingBalancer) Pick(key uint64) int {
	b.picks.Add(1)
	return b.Balancer.Pick(key)
}

// TestAcquireTriesOthersWhenOverloaded: an endpoint at both circuit-breaker limits does not fail
// a request another endpoint can take, however the balancer's picks fall: for every key, a first
// try goes to a free endpoint, and a retry to the free endpoint it has not tried.
func TestAcquireTriesOthersWhenOverloaded(t *testing.T) {
	for _, name := range []string{"ring", "maglev", "rr", "p2c"} {
		t.Run(name, func(t *testing.T) {
			c, err := ambassador.NewCluster(ambassador.NewStatic(eps("a:1", "b:1", "c:1")...),
				ambassador.WithBalancer(ambassador.Balancers[name]), ambassador.WithCircuitBreaker(1, 0))
			if err != nil {
				t.Fatal(err)
			}
			a, b := backendOf(t, c, "a:1"), backendOf(t, c, "b:1")
			// Fill a's one slot.
			var full ambassador.Lease
			for k := uint64(0); full.Backend == nil; k++ {
				l, err := c.Acquire(t.Context(), k*0x9e3779b97f4a7c15, nil)
				if err != nil {
					t.Fatal(err)
				}
				if l.Backend == a {
					full = l
				} else {
					l.Release()
				}
			}
			defer full.Release()
			for k := range uint64(2000) {
				key := k * 0x9e3779b97f4a7c15
				l, err := c.Acquire(t.Context(), key, nil)
				if err != nil {
					t.Fatalf("key %#x: Acquire with a:1 full and b:1, c:1 free: %v", key, err)
				}
				l.Release()
				if l.Backend == a {
					t.Fatalf("key %#x: Acquire went to the full a:1", key)
				}
				l, err = c.Acquire(t.Context(), key, []*ambassador.Backend{b})
				if err != nil {
					t.Fatalf("key %#x: retry after b:1 with a:1 full and c:1 free: %v", key, err)
				}
				l.Release()
				if l.Backend.Addr != "c:1" {
					t.Fatalf("key %#x: retry after b:1 with a:1 full went to %s, want c:1", key, l.Backend.Addr)
				}
			}
			tried := []*ambassador.Backend{b}
			if n := testing.AllocsPerRun(100, func() {
				l, err := c.Acquire(t.Context(), 1, tried)
				if err == nil {
					l.Release()
				}
			}); n != 0 {
				t.Errorf("Acquire past a full endpoint allocates %v times, want 0", n)
			}
		})
	}
}

// TestAcquireRetriesTriedWhenOthersCannot: a retry whose every untried endpoint is at both
// circuit-breaker limits, or ejected, goes back to the endpoint it tried, which has room, rather
// than fail with ErrOverloaded; for every balancer and key. With that one full too, it fails.
func TestAcquireRetriesTriedWhenOthersCannot(t *testing.T) {
	for _, name := range []string{"ring", "maglev", "rr", "p2c"} {
		for _, other := range []string{"full", "ejected"} {
			t.Run(name+"/"+other, func(t *testing.T) {
				c, err := ambassador.NewCluster(ambassador.NewStatic(eps("a:1", "b:1")...),
					ambassador.WithBalancer(ambassador.Balancers[name]), ambassador.WithCircuitBreaker(1, 0),
					ambassador.WithOutlier(ambassador.Outlier{ConsecutiveFailures: 1, MaxEjectionPercent: 50}),
					ambassador.WithPanicThreshold(0))
				if err != nil {
					t.Fatal(err)
				}
				a, b := backendOf(t, c, "a:1"), backendOf(t, c, "b:1")
				if other == "full" {
					for k := uint64(0); ; k++ {
						l, err := c.Acquire(t.Context(), k*0x9e3779b97f4a7c15, []*ambassador.Backend{a})
						if err != nil {
							t.Fatal(err)
						}
						if l.Backend == b {
							defer l.Release() // b stays full
							break
						}
						l.Release()
					}
				} else {
					c.Report(b, false, 0) // without Run, the Report rebuilds the balancer
					if got := available(c); !cmp.Equal([]string{"a:1"}, got) {
						t.Fatalf("available %v after b:1's failure, want [a:1]", got)
					}
				}
				for k := range uint64(500) {
					key := k * 0x9e3779b97f4a7c15
					l, err := c.Acquire(t.Context(), key, []*ambassador.Backend{a})
					if err != nil {
						t.Fatalf("key %#x: retry after a:1 with b:1 %s: %v, want a:1 again", key, other, err)
					}
					if l.Backend != a {
						t.Fatalf("key %#x: retry after a:1 with b:1 %s went to %s, want a:1", key, other, l.Backend.Addr)
					}
					if other == "full" {
						// a:1 full too: nothing has room.
						if l2, err := c.Acquire(t.Context(), key, []*ambassador.Backend{a}); !errors.Is(err, ambassador.ErrOverloaded) {
							if err == nil {
								l2.Release()
							}
							t.Fatalf("key %#x: retry with a:1 and b:1 full: %v, want ErrOverloaded", key, err)
						}
					}
					l.Release()
				}
				tried := []*ambassador.Backend{a}
				if n := testing.AllocsPerRun(100, func() {
					if l, err := c.Acquire(t.Context(), 1, tried); err == nil {
						l.Release()
					}
				}); n != 0 {
					t.Errorf("Acquire back to a tried endpoint allocates %v times, want 0", n)
				}
			})
		}
	}
}
