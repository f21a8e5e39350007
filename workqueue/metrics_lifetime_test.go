package workqueue_test

import (
	"context"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/podblocks/podblocks/internal/await"
	"github.com/podblocks/podblocks/internal/promscrape"
	"github.com/podblocks/podblocks/workqueue"
)

// unregisterer is a Pool, a Source or a pipeline stage: a component with metrics of its own,
// which stay registered until its Unregister.
type unregisterer interface {
	Run(ctx context.Context) error
	Unregister()
}

// checkMetricsLifetime checks the package doc's rule for the metrics of the components that newC
// makes, each with reg and the one name: lines that begin with prefix. The first one's metrics are
// registered by the constructor; run runs it and checks what its metrics counted, and they stay
// registered after its Run returned, unchanged; a second one, made while they are, is refused with
// an error that says so (a name of its own, the option that gives one, and the registerer's
// error) and registers nothing; Unregister takes them off (and again does no harm); and a third
// one, made then, registers its own, from zero, which stay registered, never run, until its
// Unregister.
func checkMetricsLifetime(t *testing.T, reg *prometheus.Registry, prefix, option string, newC func() (unregisterer, error), run func(c unregisterer)) {
	t.Helper()
	first, err := newC()
	if err != nil {
		t.Fatal(err)
	}
	fresh := promscrape.Lines(t, reg, prefix)
	if len(fresh) == 0 {
		t.Fatalf("no %s metrics registered after the constructor, want them registered by it", prefix)
	}
	run(first)
	ran := promscrape.Lines(t, reg, prefix)
	if cmp.Equal(fresh, ran) {
		t.Errorf("after Run: %q, the same as before it; want what it counted", ran)
	}
	if diff := cmp.Diff(ran, promscrape.Lines(t, reg, prefix)); diff != "" {
		t.Errorf("a second scrape after Run returned (-want +got):\n%s", diff)
	}
	if _, err := newC(); err == nil || !strings.Contains(err.Error(), "registered already") || !strings.Contains(err.Error(), option) {
		t.Errorf("a second one of the name while the first's metrics are registered: %v; want an error saying so and naming %s", err, option)
	}
	if diff := cmp.Diff(ran, promscrape.Lines(t, reg, prefix)); diff != "" {
		t.Errorf("after the second one was refused (-want +got):\n%s", diff)
	}
	first.Unregister()
	if got := promscrape.Lines(t, reg, prefix); len(got) != 0 {
		t.Errorf("after Unregister: %q, want none", got)
	}
	first.Unregister()
	third, err := newC()
	if err != nil {
		t.Fatalf("one made after the first's Unregister: %v", err)
	}
	if diff := cmp.Diff(fresh, promscrape.Lines(t, reg, prefix)); diff != "" {
		t.Errorf("one made after the first's Unregister (-want +got):\n%s", diff)
	}
	third.Unregister()
	if got := promscrape.Lines(t, reg, prefix); len(got) != 0 {
		t.Errorf("after the never-run one's Unregister: %q, want none", got)
	}
}

// built turns a constructor's results into an unregisterer's.
func built[C unregisterer](c C, err error) (unregisterer, error) {
	if err != nil {
		return nil, err
	}
	return c, nil
}

// TestPoolMetricsLifetime: a Pool's metrics, registered by NewPool, outlive its Run with the final
// counts until its Unregister, and a pool of the name is refused until then.
func TestPoolMetricsLifetime(t *testing.T) {
	reg := prometheus.NewRegistry()
	q := mustMemory(t)
	ctx := context.Background()
	checkMetricsLifetime(t, reg, "podblocks_workqueue_", "WithPoolName", func() (unregisterer, error) {
		return built(workqueue.NewPool(q, workqueue.HandlerFunc(func(context.Context, *workqueue.Item) error { return nil }),
			workqueue.WithRegisterer(reg), workqueue.WithPoolName("w")))
	}, func(c unregisterer) {
		stop := runPool(t, c.(*workqueue.Pool))
		for range 2 {
			if _, err := q.Add(ctx, []byte("x"), workqueue.AddOptions{}); err != nil {
				t.Fatal(err)
			}
		}
		want := []string{`podblocks_workqueue_items_total{outcome="acked",pool="w"} 2`}
		await.True(t, "the pool's acks in its metrics", 10*time.Second, func() bool {
			return cmp.Equal(want, promscrape.Lines(t, reg, `podblocks_workqueue_items_total{outcome="acked"`))
		})
		if err := stop(); err != nil {
			t.Fatal(err)
		}
		if diff := cmp.Diff(want, promscrape.Lines(t, reg, `podblocks_workqueue_items_total{outcome="acked"`)); diff != "" {
			t.Errorf("after Run returned (-want +got):\n%s", diff)
		}
	})
}

// TestSourceMetricsLifetime: a Source's metrics, registered by NewSource, count across its Runs
// and outlive them until its Unregister, and a Source of the name is refused until then.
func TestSourceMetricsLifetime(t *testing.T) {
	src := &bookSource{items: map[string]string{"a": `1`, "b": `2`}}
	srv := httptest.NewServer(src)
	defer srv.Close()
	reg := prometheus.NewRegistry()
	added := func(n int) []string {
		return []string{`podblocks_workqueue_source_added_items_total{source="book"} ` + itoa(n)}
	}
	runUntilAdded := func(s *workqueue.Source, want int) {
		t.Helper()
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan error, 1)
		go func() { done <- s.Run(ctx) }()
		await.True(t, "the Source's adds in its metrics", 10*time.Second, func() bool {
			return cmp.Equal(added(want), promscrape.Lines(t, reg, "podblocks_workqueue_source_added_items_total"))
		})
		cancel()
		if err := <-done; err != nil {
			t.Fatal(err)
		}
		if diff := cmp.Diff(added(want), promscrape.Lines(t, reg, "podblocks_workqueue_source_added_items_total")); diff != "" {
			t.Errorf("after Run returned (-want +got):\n%s", diff)
		}
	}
	checkMetricsLifetime(t, reg, "podblocks_workqueue_source_", "WithSourceName", func() (unregisterer, error) {
		return built(workqueue.NewSource(srv.URL, mustMemory(t), workqueue.WithRegisterer(reg), workqueue.WithSourceName("book"),
			workqueue.WithPollInterval(10*time.Millisecond)))
	}, func(c unregisterer) {
		s := c.(*workqueue.Source)
		runUntilAdded(s, 2)
		src.mu.Lock()
		src.items["c"] = `3`
		src.mu.Unlock()
		runUntilAdded(s, 3) // run again: its counts go on from the first Run's
	})
}

// TestStageMetricsLifetime: every kind of pipeline stage's metrics, registered by its constructor,
// outlive its Run with what it counted until its Unregister, and a stage of the kind and name is
// refused until then.
func TestStageMetricsLifetime(t *testing.T) {
	eachStage(t, nil, func(t *testing.T, tc stageCase, ins []*workqueue.Memory, build func(workqueue.Queue, ...workqueue.StageOption) component) {
		reg := prometheus.NewRegistry()
		out := mustMemory(t)
		checkMetricsLifetime(t, reg, "podblocks_workqueue_stage_", "WithStageName", func() (unregisterer, error) {
			// Not build, which fails the test on an error: the second one's is wanted.
			var qs []workqueue.Queue
			for _, in := range ins {
				qs = append(qs, in)
			}
			st, err := tc.build(qs, out, workqueue.WithRegisterer(reg), workqueue.WithStageName("s"), workqueue.WithFlushAfter(100*time.Millisecond))
			if err != nil {
				return nil, err
			}
			return st.(unregisterer), nil
		}, func(c unregisterer) {
			if err, _ := runFor(c, 10*time.Second); err != nil {
				t.Fatal(err)
			}
			want := stageSamples("s", [5]int{len(ins) * 5}, 0, tc.want, [3]int64{})
			if diff := cmp.Diff(want, stageScrape(t, reg)); diff != "" {
				t.Errorf("after Run returned (-want +got):\n%s", diff)
			}
		})
	})
}
