package workqueue_test

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/podblocks/podblocks/internal/promscrape"
	"github.com/podblocks/podblocks/workqueue"
)

// gatheredNames are the names of the metric families reg gathers.
func gatheredNames(t *testing.T, reg prometheus.Gatherer) []string {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatalf("gather: %v", err)
	}
	var names []string
	for _, mf := range mfs {
		names = append(names, mf.GetName())
	}
	return names
}

// refusing is a registry that, while on, refuses every collector that describes the metric named
// name, as a Registerer may refuse any one of a component's collectors.
type refusing struct {
	*prometheus.Registry
	name string
	on   bool
}

func (r *refusing) Register(c prometheus.Collector) error {
	if r.on {
		ch := make(chan *prometheus.Desc)
		go func() {
			c.Describe(ch)
			close(ch)
		}()
		refuse := false
		for d := range ch {
			refuse = refuse || strings.Contains(d.String(), fmt.Sprintf("fqName: %q", r.name))
		}
		if refuse {
			return fmt.Errorf("refused: %s", r.name)
		}
	}
	return r.Registry.Register(c)
}

// TestRegistrationAllOrNothing: a constructor whose registerer refuses one of its component's
// metrics (a name clash with a metric the user registered: the last of the component's, here)
// returns the error and leaves none of them registered; and, made again once the registerer takes
// them, it registers them all, as a half-registered first try would keep it from doing.
func TestRegistrationAllOrNothing(t *testing.T) {
	srv := httptest.NewServer(http.NotFoundHandler())
	defer srv.Close()
	handler := workqueue.HandlerFunc(func(context.Context, *workqueue.Item) error { return nil })
	for _, tc := range []struct {
		name  string
		clash string // the component's last metric
		make  func(t *testing.T, reg prometheus.Registerer) error
	}{
		{"pool", "podblocks_workqueue_depth_stats_errors_total", func(t *testing.T, reg prometheus.Registerer) error {
			_, err := workqueue.NewPool(mustMemory(t), handler, workqueue.WithRegisterer(reg))
			return err
		}},
		{"source", "podblocks_workqueue_source_fetch_duration_seconds", func(t *testing.T, reg prometheus.Registerer) error {
			_, err := workqueue.NewSource(srv.URL, mustMemory(t), workqueue.WithRegisterer(reg))
			return err
		}},
		{"memory", "podblocks_workqueue_queue_expired_leases_total", func(t *testing.T, reg prometheus.Registerer) error {
			q, err := workqueue.NewMemory(workqueue.WithRegisterer(reg))
			if err == nil {
				t.Cleanup(func() { q.Close() })
			}
			return err
		}},
		{"stage", "podblocks_workqueue_stage_add_duration_seconds", func(t *testing.T, reg prometheus.Registerer) error {
			_, err := workqueue.NewCopier(mustMemory(t), []workqueue.Queue{mustMemory(t)}, workqueue.WithRegisterer(reg))
			return err
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			reg := prometheus.NewRegistry()
			reg.MustRegister(prometheus.NewCounter(prometheus.CounterOpts{Name: tc.clash, Help: "The user's own."}))
			if err := tc.make(t, reg); err == nil {
				t.Fatalf("made with %s registered by the user: no error, want the registerer's", tc.clash)
			}
			if diff := cmp.Diff([]string{tc.clash}, gatheredNames(t, reg)); diff != "" {
				t.Errorf("registered after the clash (-want +got):\n%s", diff)
			}

			ref := &refusing{Registry: prometheus.NewRegistry(), name: tc.clash, on: true}
			if err := tc.make(t, ref); err == nil {
				t.Fatalf("made with %s refused: no error, want the registerer's", tc.clash)
			}
			if names := gatheredNames(t, ref); len(names) > 0 {
				t.Errorf("registered after the refusal: %q, want none", names)
			}
			ref.on = false
			if err := tc.make(t, ref); err != nil {
				t.Fatalf("made again once the registerer takes the metrics: %v", err)
			}
			if names := gatheredNames(t, ref); !slices.Contains(names, tc.clash) {
				t.Errorf("registered then: %q, want %s among them", names, tc.clash)
			}
		})
	}
}

// TestSourceMetrics: a Source counts the items the source returned, and the GETs of the list and
// of the items, failed ones apart, under the names and labels the package doc lists.
func TestSourceMetrics(t *testing.T) {
	src := &bookSource{items: map[string]string{"a": `1`, "b": `2`}, list: []string{"a", "gone", "b"}}
	reg := prometheus.NewRegistry()
	s, q := serveSource(t, src, workqueue.WithRegisterer(reg), workqueue.WithSourceName("book"))
	if n, err := s.Poll(context.Background()); n != 2 || !errors.Is(err, workqueue.ErrSource) {
		t.Fatalf("Poll = %d, %v; want 2 and the ErrSource of \"gone\"", n, err)
	}
	q.Close() // the next Poll's adds fail: not a fetch error
	src.mu.Lock()
	src.list = []string{"a", "b", "c"}
	src.items["c"] = `3`
	src.mu.Unlock()
	if n, err := s.Poll(context.Background()); n != 0 || !errors.Is(err, workqueue.ErrClosed) {
		t.Fatalf("Poll to a closed queue = %d, %v; want 0 and ErrClosed", n, err)
	}
	want := []string{
		"# TYPE podblocks_workqueue_source_fetch_duration_seconds histogram",
		`podblocks_workqueue_source_fetch_duration_seconds_count{request="item",source="book"} 4`,
		`podblocks_workqueue_source_fetch_duration_seconds_count{request="list",source="book"} 2`,
		"# TYPE podblocks_workqueue_source_fetch_errors_total counter",
		`podblocks_workqueue_source_fetch_errors_total{request="item",source="book"} 1`,
		`podblocks_workqueue_source_fetch_errors_total{request="list",source="book"} 0`,
		"# TYPE podblocks_workqueue_source_fetched_items_total counter",
		`podblocks_workqueue_source_fetched_items_total{source="book"} 3`,
	}
	got := promscrape.Lines(t, reg, "# TYPE podblocks_workqueue_source_", "podblocks_workqueue_source_fetch_duration_seconds_count",
		"podblocks_workqueue_source_fetch_errors_total", "podblocks_workqueue_source_fetched_items_total")
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("source metrics (-want +got):\n%s", diff)
	}
}

// TestSourceMetricsListFailure: a list the source fails to answer, or answers with something that
// is not an ItemList, is a failed list GET.
func TestSourceMetricsListFailure(t *testing.T) {
	var bad bool
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if bad {
			w.Write([]byte(`{"kind":"Item"}`))
			return
		}
		http.Error(w, "down", http.StatusInternalServerError)
	}))
	defer srv.Close()
	reg := prometheus.NewRegistry()
	s, err := workqueue.NewSource(srv.URL, mustMemory(t), workqueue.WithRegisterer(reg))
	if err != nil {
		t.Fatal(err)
	}
	for _, b := range []bool{false, true} {
		bad = b
		if _, err := s.Poll(context.Background()); !errors.Is(err, workqueue.ErrSource) {
			t.Fatalf("Poll of a source answering 500 or a wrong kind: %v, want ErrSource", err)
		}
	}
	want := []string{
		`podblocks_workqueue_source_fetch_duration_seconds_count{request="item"} 0`,
		`podblocks_workqueue_source_fetch_duration_seconds_count{request="list"} 2`,
		`podblocks_workqueue_source_fetch_errors_total{request="item"} 0`,
		`podblocks_workqueue_source_fetch_errors_total{request="list"} 2`,
		`podblocks_workqueue_source_fetched_items_total 0`,
	}
	got := promscrape.Lines(t, reg, "podblocks_workqueue_source_fetch_duration_seconds_count",
		"podblocks_workqueue_source_fetch_errors_total", "podblocks_workqueue_source_fetched_items_total")
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("source metrics (-want +got):\n%s", diff)
	}
}
