package scattertest_test

import (
	"context"
	"net/http/httptest"
	"testing"
	"testing/synctest"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/podblocks/podblocks/scatter"
	"github.com/podblocks/podblocks/scattertest"
	"go.uber.org/goleak"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

type fn = func(context.Context, string) (string, error)

func TestLeafFunc(t *testing.T) {
	scattertest.TestLeaf(t, func(t *testing.T, f fn) scatter.Leaf[string, string] { return scatter.LeafFunc[string, string](f) })
}

func TestDynamicReplicaSet(t *testing.T) {
	for name, ch := range map[string]<-chan struct{}{"static": nil, "open": make(chan struct{})} {
		t.Run(name, func(t *testing.T) {
			scattertest.TestLeaf(t, func(t *testing.T, f fn) scatter.Leaf[string, string] {
				d, err := scatter.NewDynamicReplicaSet(func() ([]string, <-chan struct{}) { return []string{"a", "b"}, ch },
					func(string) scatter.Leaf[string, string] { return scatter.LeafFunc[string, string](f) })
				if err != nil {
					t.Fatal(err)
				}
				return d
			})
		})
	}
}

func TestReplicaSet(t *testing.T) {
	scattertest.TestLeaf(t, func(t *testing.T, f fn) scatter.Leaf[string, string] {
		rs, err := scatter.NewReplicaSet[string, string](scatter.LeafFunc[string, string](f), scatter.LeafFunc[string, string](f))
		if err != nil {
			t.Fatal(err)
		}
		return rs
	})
}

func TestHTTPLeaf(t *testing.T) {
	scattertest.TestLeaf(t, func(t *testing.T, f fn) scatter.Leaf[string, string] {
		srv := httptest.NewServer(&scatter.LeafHandler[string, string]{Func: f})
		t.Cleanup(srv.Close)
		c := scatter.NewHTTPClient()
		t.Cleanup(c.CloseIdleConnections)
		return scatter.NewHTTPLeaf[string, string](srv.URL, c)
	})
}

func TestFakeLeaf(t *testing.T) {
	scattertest.TestLeaf(t, func(t *testing.T, f fn) scatter.Leaf[string, string] {
		l := scattertest.NewLeaf[string, string](1, scattertest.Constant(0), nil)
		l.SetFunc(f)
		return l
	})
}

func TestLeafLatencyAndStats(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		lat := scattertest.Bimodal(scattertest.Constant(time.Millisecond), scattertest.Constant(time.Second), 0.1)
		a := scattertest.NewLeaf(7, lat, func(x int) int { return x * 2 })
		b := scattertest.NewLeaf(7, lat, func(x int) int { return x * 2 })
		var da, db []time.Duration
		for i := range 200 {
			for _, p := range []struct {
				l *scattertest.Leaf[int, int]
				d *[]time.Duration
			}{{a, &da}, {b, &db}} {
				start := time.Now()
				got, err := p.l.Call(context.Background(), i)
				if err != nil || got != 2*i {
					t.Fatalf("Call(%d) = %d, %v", i, got, err)
				}
				*p.d = append(*p.d, time.Since(start))
			}
		}
		if diff := cmp.Diff(da, db); diff != "" {
			t.Errorf("same seed, different latencies (-a +b):\n%s", diff)
		}
		slow := 0
		for _, d := range da {
			if d == time.Second {
				slow++
			} else if d != time.Millisecond {
				t.Fatalf("latency %v is neither mode", d)
			}
		}
		if slow < 8 || slow > 35 {
			t.Errorf("%d of 200 slow, want about 20", slow)
		}
		// Cancel, fail, hang.
		ctx, cancel := context.WithTimeout(context.Background(), 500*time.Millisecond)
		a.SetLatency(scattertest.Constant(time.Hour))
		if _, err := a.Call(ctx, 1); err != context.DeadlineExceeded {
			t.Errorf("cancelled call err = %v", err)
		}
		cancel()
		a.SetLatency(scattertest.Constant(time.Millisecond))
		a.SetFailRate(1)
		if _, err := a.Call(context.Background(), 1); err != scattertest.ErrInjected {
			t.Errorf("failing call err = %v", err)
		}
		a.SetFailRate(0)
		a.SetIgnoreContext(true)
		a.SetLatency(scattertest.Constant(time.Second))
		ctx, cancel = context.WithTimeout(context.Background(), 100*time.Millisecond)
		if _, err := a.Call(ctx, 1); err != nil {
			t.Errorf("hanging call err = %v", err)
		}
		cancel()
		want := scattertest.Stats{Calls: 203, Completed: 202, Failed: 1, Canceled: 1, Lingered: 900 * time.Millisecond}
		if diff := cmp.Diff(want, a.Stats()); diff != "" {
			t.Errorf("stats (-want +got):\n%s", diff)
		}
	})
}

func TestLatencyShapes(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		l := scattertest.NewLeaf[int, int](3, scattertest.LogNormal(10*time.Millisecond, 0.5), nil)
		u := scattertest.NewLeaf[int, int](3, scattertest.Uniform(time.Millisecond, 3*time.Millisecond), nil)
		var below, ubelow int
		for range 400 {
			start := time.Now()
			l.Call(context.Background(), 0)
			if time.Since(start) < 10*time.Millisecond {
				below++
			}
			start = time.Now()
			u.Call(context.Background(), 0)
			d := time.Since(start)
			if d < time.Millisecond || d >= 3*time.Millisecond {
				t.Fatalf("uniform latency %v out of range", d)
			}
			if d < 2*time.Millisecond {
				ubelow++
			}
		}
		if below < 160 || below > 240 {
			t.Errorf("lognormal: %d of 400 below the median, want about 200", below)
		}
		if ubelow < 160 || ubelow > 240 {
			t.Errorf("uniform: %d of 400 below the middle, want about 200", ubelow)
		}
	})
}
