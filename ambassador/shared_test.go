package ambassador_test

import (
	"context"
	"errors"
	"slices"
	"sync/atomic"
	"testing"
	"time"

	"github.com/podblocks/podblocks/ambassador"
	"github.com/podblocks/podblocks/ambassadortest"
)

// eventually reports whether cond holds within 3 s, polling it.
func eventually(cond func() bool) bool {
	for deadline := time.Now().Add(3 * time.Second); time.Now().Before(deadline); time.Sleep(10 * time.Millisecond) {
		if cond() {
			return true
		}
	}
	return cond()
}

// addrs returns the addresses of c's endpoints.
func addrs(c *ambassador.Cluster) []string {
	st, _ := c.Status()
	var out []string
	for _, e := range st {
		out = append(out, e.Addr)
	}
	slices.Sort(out)
	return out
}

// sharedCluster returns a cluster over src with opts, and an HTTP and a TCP proxy sharing it.
func sharedCluster(t *testing.T, src ambassador.Source, opts ...ambassador.Option) (*ambassador.Cluster, *ambassador.HTTPProxy, *ambassador.TCPProxy) {
	t.Helper()
	c, err := ambassador.NewCluster(src, opts...)
	if err != nil {
		t.Fatal(err)
	}
	hp, err := ambassador.NewHTTPProxy("127.0.0.1:0", c)
	if err != nil {
		t.Fatal(err)
	}
	tp, err := ambassador.NewTCPProxy("127.0.0.1:0", c)
	if err != nil {
		t.Fatal(err)
	}
	return c, hp, tp
}

// ownerStopped starts owner, then sharer over the same cluster, and stops owner (the proxy that
// runs the cluster) normally, leaving sharer serving until the test ends.
func ownerStopped(t *testing.T, owner, sharer component) {
	t.Helper()
	o := startStoppable(t, owner)
	run(t, sharer)
	if !o.stop(t, 15*time.Second) {
		t.Fatal("the proxy running the cluster did not stop")
	}
}

// TestSharedClusterOwnerStopsSharerFollowsSource: when the proxy that runs a shared cluster stops
// normally, the proxy still serving it takes it over: it follows its Source.
func TestSharedClusterOwnerStopsSharerFollowsSource(t *testing.T) {
	a := ambassadortest.NewHTTPBackend(t, "a")
	b := ambassadortest.NewHTTPBackend(t, "b")
	src := ambassador.NewStatic(a.Endpoint())
	_, sharer, owner := sharedCluster(t, src)
	ownerStopped(t, owner, sharer)
	url := "http://" + sharer.Addr().String()
	cl := client(t)
	if code, body := get(t, cl, url); code != 200 || body != "a\n" {
		t.Fatalf("before Set: %d %q", code, body)
	}
	src.Set(b.Endpoint())
	var last string
	if !eventually(func() bool { _, last = get(t, cl, url); return last == "b\n" }) {
		t.Errorf("3s after Static.Set(b), the sharing proxy still sends to %q (a.Count=%d, b.Count=%d): nobody follows the Source", last, a.Count(), b.Count())
	}
}

// TestSharedClusterOwnerStopsEjectedReadmitted: after the proxy that runs a shared cluster stops,
// an endpoint ejected while the other proxy serves it is readmitted when its ejection ends.
func TestSharedClusterOwnerStopsEjectedReadmitted(t *testing.T) {
	a := ambassadortest.NewHTTPBackend(t, "a")
	b := ambassadortest.NewHTTPBackend(t, "b")
	c, owner, sharer := sharedCluster(t, ambassador.NewStatic(a.Endpoint(), b.Endpoint()),
		ambassador.WithOutlier(ambassador.Outlier{ConsecutiveFailures: 1, BaseEjection: 100 * time.Millisecond, MaxEjectionPercent: 50}))
	ownerStopped(t, owner, sharer)
	bb := backendOf(t, c, b.Addr)
	c.Report(bb, false, 0)
	if got := available(c); len(got) != 1 {
		t.Fatalf("available after b's failure: %v", got)
	}
	if !eventually(func() bool { return len(available(c)) == 2 }) {
		t.Errorf("3s after a 100ms ejection, available = %v, want both: nobody readmits", available(c))
	}
}

// TestSharedClusterOwnerStopsHealthChecksGoOn: the health checks of a shared cluster go on when
// the proxy that ran it stops and the other takes it over.
func TestSharedClusterOwnerStopsHealthChecksGoOn(t *testing.T) {
	var bad atomic.Bool
	check := func(ctx context.Context, ep ambassador.Endpoint) error {
		if ep.Addr == "b:1" && bad.Load() {
			return errors.New("down")
		}
		return nil
	}
	c, sharer, owner := sharedCluster(t, ambassador.NewStatic(eps("a:1", "b:1")...),
		ambassador.WithHealthCheck(ambassador.HealthCheck{Check: check, Interval: 10 * time.Millisecond, UnhealthyThreshold: 1}))
	ownerStopped(t, owner, sharer)
	bad.Store(true)
	if !eventually(func() bool { return slices.Equal(available(c), []string{"a:1"}) }) {
		t.Errorf("3s after b's checks began failing, available = %v, want [a:1]: nobody checks", available(c))
	}
}

// TestProxyStartedAfterClusterRunEndsRunsIt: a proxy started over a cluster whose last Run has
// returned runs it (it follows its Source) instead of serving it unrun.
func TestProxyStartedAfterClusterRunEndsRunsIt(t *testing.T) {
	src := ambassador.NewStatic(eps("a:1")...)
	c, first, later := sharedCluster(t, src)
	if !startStoppable(t, first).stop(t, 15*time.Second) {
		t.Fatal("the first proxy did not stop")
	}
	run(t, later)
	src.Set(eps("b:1")...)
	if !eventually(func() bool { return slices.Equal(addrs(c), []string{"b:1"}) }) {
		t.Errorf("3s after Static.Set(b:1), the cluster's endpoints are %v: nobody follows the Source", addrs(c))
	}
}

// TestClusterRunOneAtATime: a Cluster's Run returns ErrRunning while another Run runs, and once
// that has returned, a new Run runs it again.
func TestClusterRunOneAtATime(t *testing.T) {
	src := ambassador.NewStatic(eps("a:1")...)
	c, err := ambassador.NewCluster(src)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- c.Run(ctx) }()
	<-c.Ready()
	if err := c.Run(context.Background()); !errors.Is(err, ambassador.ErrRunning) {
		t.Errorf("a second Run while the first runs = %v, want ErrRunning", err)
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatalf("first Run = %v", err)
	}
	ctx, cancel = context.WithCancel(context.Background())
	go func() { done <- c.Run(ctx) }()
	defer func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("second Run = %v", err)
		}
	}()
	src.Set(eps("b:1")...)
	if !eventually(func() bool { return slices.Equal(addrs(c), []string{"b:1"}) }) {
		t.Errorf("3s after Static.Set(b:1), the endpoints are %v: the second Run does not follow the Source", addrs(c))
	}
}
