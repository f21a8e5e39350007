package scatter_test

import (
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"sync/atomic"
	"testing"
	"time"

	"github.com/podblocks/podblocks/scatter"
)

// An EndpointsFunc over a fixed list (nil change channel) never changes: the set is built once,
// so that its statistics and sketch accumulate.
func TestDynamicNilChannelNeverChanges(t *testing.T) {
	var built atomic.Int32
	eps := func() ([]string, <-chan struct{}) { return []string{"a", "b"}, nil }
	d, err := scatter.NewDynamicReplicaSet(eps, func(string) scatter.Leaf[int, int] {
		built.Add(1)
		return scatter.LeafFunc[int, int](func(context.Context, int) (int, error) { return 1, nil })
	})
	if err != nil {
		t.Fatal(err)
	}
	first, err := d.Current()
	if err != nil {
		t.Fatal(err)
	}
	for range 5 {
		if _, err := d.Call(t.Context(), 0); err != nil {
			t.Fatal(err)
		}
	}
	rs, _ := d.Current()
	if rs != first || built.Load() != 2 {
		t.Errorf("a nil change channel rebuilt the set (same set %v, leaves built %d, want 2)", rs == first, built.Load())
	}
	if n := rs.Stats()[0].Samples + rs.Stats()[1].Samples; n != 5 {
		t.Errorf("after 5 calls the set has %d samples", n)
	}
}

// newLeaf failing for a new address must not consume the change: the next call reads the
// addresses again.
func TestDynamicNilLeafKeepsChange(t *testing.T) {
	ch := make(chan struct{})
	addrs := []string{"old"}
	var cur <-chan struct{} = ch
	eps := func() ([]string, <-chan struct{}) { return addrs, cur }
	failOnce := true
	d, err := scatter.NewDynamicReplicaSet(eps, func(a string) scatter.Leaf[int, string] {
		if a == "new" && failOnce {
			failOnce = false
			return nil
		}
		return scatter.LeafFunc[int, string](func(context.Context, int) (string, error) { return a, nil })
	})
	if err != nil {
		t.Fatal(err)
	}
	if got, _ := d.Call(t.Context(), 0); got != "old" {
		t.Fatalf("got %q", got)
	}
	addrs, cur = []string{"new"}, make(chan struct{})
	close(ch)
	if _, err := d.Call(t.Context(), 0); !errors.Is(err, scatter.ErrNoReplicas) {
		t.Fatalf("first call after the change (newLeaf nil): %v, want ErrNoReplicas", err)
	}
	if got, err := d.Call(t.Context(), 0); got != "new" {
		t.Errorf("second call after the change answered %q, %v; want \"new\"", got, err)
	}
}

// WithCanary says a failed canary makes Do return ErrCanary, also under WithFailFast.
func TestCanaryFailFast(t *testing.T) {
	boom := errors.New("query of death")
	leaves := make([]scatter.Leaf[int, int], 4)
	var calls atomic.Int32
	for i := range leaves {
		leaves[i] = scatter.LeafFunc[int, int](func(context.Context, int) (int, error) { calls.Add(1); return 0, boom })
	}
	f, err := scatter.New(leaves, sum, scatter.WithCanary(1, time.Second), scatter.WithFailFast())
	if err != nil {
		t.Fatal(err)
	}
	res, err := f.Do(t.Context(), 0)
	f.Wait()
	if !errors.Is(err, scatter.ErrCanary) || !errors.Is(err, boom) || res.Why != scatter.EndCanary {
		t.Errorf("canary failed under fail-fast: err %v (why %v), want ErrCanary wrapping its error", err, res.Why)
	}
	if calls.Load() != 1 {
		t.Errorf("%d leaves called, want the canary only", calls.Load())
	}
}

type countRT struct{ n atomic.Int32 }

func (c *countRT) RoundTrip(r *http.Request) (*http.Response, error) {
	c.n.Add(1)
	return http.DefaultTransport.RoundTrip(r)
}

// HTTPLeaf.Client's doc: nil means a client made by NewHTTPClient, not http.DefaultClient
// (DefaultTransport keeps 2 idle connections per host).
func TestHTTPLeafNilClient(t *testing.T) {
	srv := httptest.NewServer(&scatter.LeafHandler[int, int]{Func: func(_ context.Context, n int) (int, error) { return n, nil }})
	defer srv.Close()
	rt := &countRT{}
	old := http.DefaultClient.Transport
	http.DefaultClient.Transport = rt
	defer func() {
		http.DefaultClient.Transport = old
		http.DefaultTransport.(*http.Transport).CloseIdleConnections()
	}()
	l := &scatter.HTTPLeaf[int, int]{URL: srv.URL}
	if got, err := l.Call(t.Context(), 7); err != nil || got != 7 {
		t.Fatalf("Call = %d, %v", got, err)
	}
	if rt.n.Load() != 0 {
		t.Errorf("a nil-Client HTTPLeaf went through http.DefaultClient (%d round trips)", rt.n.Load())
	}
}

// A shard whose goroutine had not reached its leaf when a quorum ended the fan-out is skipped:
// 0 attempts, StatusSkipped.
func TestNeverCalledReportedSkipped(t *testing.T) {
	const n = 200
	var calls atomic.Int32
	leaves := make([]scatter.Leaf[int, int], n)
	for i := range leaves {
		leaves[i] = scatter.LeafFunc[int, int](func(ctx context.Context, _ int) (int, error) {
			calls.Add(1)
			if i == 0 {
				return 1, nil
			}
			<-ctx.Done()
			return 0, ctx.Err()
		})
	}
	f, err := scatter.New(leaves, sum, scatter.WithQuorum(1))
	if err != nil {
		t.Fatal(err)
	}
	for range 50 {
		calls.Store(0)
		res, err := f.Do(t.Context(), 0)
		if err != nil {
			t.Fatal(err)
		}
		f.Wait()
		attempts := 0
		for _, s := range res.Slots {
			attempts += s.Attempts
			if s.Status == scatter.StatusSkipped && s.Attempts != 0 {
				t.Fatalf("a skipped shard reports %d attempts", s.Attempts)
			}
			if s.Status != scatter.StatusSkipped && s.Attempts == 0 {
				t.Fatalf("a %v shard reports no attempt", s.Status)
			}
		}
		if c := int(calls.Load()); attempts > c {
			t.Fatalf("reported attempts %d; leaf calls made %d", attempts, c)
		}
	}
}
