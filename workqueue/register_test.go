package workqueue_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"sync/atomic"
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

// sourceCounts are the values of an unnamed Source's metrics: its adds, and its GETs by request.
type sourceCounts struct{ added, addErrors, lists, listErrors, items, itemErrors int }

// checkSourceMetrics checks that the values of the unnamed Source's metrics reg gathers (its
// histograms' counts) are want.
func checkSourceMetrics(t *testing.T, reg prometheus.Gatherer, want sourceCounts) {
	t.Helper()
	lines := []string{
		fmt.Sprintf("podblocks_workqueue_source_add_errors_total %d", want.addErrors),
		fmt.Sprintf("podblocks_workqueue_source_added_items_total %d", want.added),
		fmt.Sprintf(`podblocks_workqueue_source_fetch_duration_seconds_count{request="item"} %d`, want.items),
		fmt.Sprintf(`podblocks_workqueue_source_fetch_duration_seconds_count{request="list"} %d`, want.lists),
		fmt.Sprintf(`podblocks_workqueue_source_fetch_errors_total{request="item"} %d`, want.itemErrors),
		fmt.Sprintf(`podblocks_workqueue_source_fetch_errors_total{request="list"} %d`, want.listErrors),
	}
	got := promscrape.Lines(t, reg, "podblocks_workqueue_source_add", "podblocks_workqueue_source_fetch_duration_seconds_count",
		"podblocks_workqueue_source_fetch_errors_total")
	if diff := cmp.Diff(lines, got); diff != "" {
		t.Errorf("source metrics (-want +got):\n%s", diff)
	}
}

// TestSourceMetrics: a Source counts the items it added and the adds the queue refused, each time
// it tries them, and the GETs of the list and of the items, failed ones apart, under the names and
// labels the package doc lists.
func TestSourceMetrics(t *testing.T) {
	src := &bookSource{items: map[string]string{"a": `1`, "b": `2`}, list: []string{"a", "gone", "b"}}
	reg := prometheus.NewRegistry()
	s, q := serveSource(t, src, workqueue.WithRegisterer(reg), workqueue.WithSourceName("book"))
	if n, err := s.Poll(context.Background()); n != 2 || !errors.Is(err, workqueue.ErrSource) {
		t.Fatalf("Poll = %d, %v; want 2 and the ErrSource of \"gone\"", n, err)
	}
	q.Close() // the next Polls' adds fail: not fetch errors, failed adds
	src.mu.Lock()
	src.list = []string{"a", "b", "c"}
	src.items["c"] = `3`
	src.mu.Unlock()
	for range 2 {
		if n, err := s.Poll(context.Background()); n != 0 || !errors.Is(err, workqueue.ErrClosed) {
			t.Fatalf("Poll to a closed queue = %d, %v; want 0 and ErrClosed", n, err)
		}
	}
	want := []string{
		"# TYPE podblocks_workqueue_source_add_errors_total counter",
		"# TYPE podblocks_workqueue_source_added_items_total counter",
		"# TYPE podblocks_workqueue_source_fetch_duration_seconds histogram",
		"# TYPE podblocks_workqueue_source_fetch_errors_total counter",
		`podblocks_workqueue_source_add_errors_total{source="book"} 2`,
		`podblocks_workqueue_source_added_items_total{source="book"} 2`,
		`podblocks_workqueue_source_fetch_duration_seconds_count{request="item",source="book"} 5`,
		`podblocks_workqueue_source_fetch_duration_seconds_count{request="list",source="book"} 3`,
		`podblocks_workqueue_source_fetch_errors_total{request="item",source="book"} 1`,
		`podblocks_workqueue_source_fetch_errors_total{request="list",source="book"} 0`,
	}
	got := promscrape.Lines(t, reg, "# TYPE podblocks_workqueue_source_", "podblocks_workqueue_source_")
	got = slices.DeleteFunc(got, func(l string) bool {
		return strings.Contains(l, "_bucket{") || strings.Contains(l, "_sum{")
	})
	slices.Sort(got)
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("source metrics (-want +got):\n%s", diff)
	}
}

// TestSourceItemOfAnotherKind: an item GET answered with JSON of another kind (a list) is a failed
// item GET, as a list of another kind is a failed list GET: nothing is added, and a later Poll tries
// the item again.
func TestSourceItemOfAnotherKind(t *testing.T) {
	var good atomic.Bool
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch {
		case r.URL.Path == "/api/v1/items" || !good.Load():
			w.Write([]byte(`{"kind":"ItemList","apiVersion":"v1","items":["x"]}`))
		default:
			w.Write([]byte(`{"kind":"Item","apiVersion":"v1","data":"payload"}`))
		}
	}))
	defer srv.Close()
	reg := prometheus.NewRegistry()
	q := mustMemory(t)
	s, err := workqueue.NewSource(srv.URL, q, workqueue.WithRegisterer(reg))
	if err != nil {
		t.Fatal(err)
	}
	if n, err := s.Poll(context.Background()); n != 0 || !errors.Is(err, workqueue.ErrSource) || !strings.Contains(err.Error(), `kind "ItemList", want "Item"`) {
		t.Fatalf("Poll of an item answered with an ItemList = %d, %v; want 0 and an ErrSource naming the kinds", n, err)
	}
	if st, err := q.Stats(context.Background()); err != nil || st.Depth() != 0 {
		t.Fatalf("queue after the Poll: %+v, %v; want nothing added", st, err)
	}
	checkSourceMetrics(t, reg, sourceCounts{added: 0, addErrors: 0, lists: 1, listErrors: 0, items: 1, itemErrors: 1})
	good.Store(true)
	if n, err := s.Poll(context.Background()); n != 1 || err != nil {
		t.Fatalf("Poll once the item is answered = %d, %v; want 1, nil", n, err)
	}
	it, err := q.Lease(context.Background())
	if err != nil || string(it.Payload) != `"payload"` {
		t.Fatalf("Lease = %+v, %v; want the item's data", it, err)
	}
}

// stoppingTransport answers the list with one item, and stops the Source (cancels its Poll's ctx)
// during the item's GET: then answers it if answer, or fails it as a cut-off GET does.
type stoppingTransport struct {
	cancel context.CancelFunc
	answer bool
}

func (tr *stoppingTransport) RoundTrip(r *http.Request) (*http.Response, error) {
	body := `{"kind":"ItemList","apiVersion":"v1","items":["a"]}`
	if r.URL.Path != "/api/v1/items" {
		tr.cancel()
		if !tr.answer {
			return nil, context.Canceled
		}
		body = `{"kind":"Item","apiVersion":"v1","data":1}`
	}
	return &http.Response{StatusCode: http.StatusOK, Header: http.Header{}, Body: io.NopCloser(strings.NewReader(body)), Request: r}, nil
}

// TestSourceMetricsStopped: an item GET that the Source's stop cuts off counts neither way, in any
// of the GET's metrics; one answered before counts whole (its time, no error), though the add that
// follows, cut off, counts neither way.
func TestSourceMetricsStopped(t *testing.T) {
	for _, tc := range []struct {
		answer bool
		want   sourceCounts
	}{
		{false, sourceCounts{lists: 1}},
		{true, sourceCounts{lists: 1, items: 1}},
	} {
		t.Run(fmt.Sprintf("answered=%v", tc.answer), func(t *testing.T) {
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			reg := prometheus.NewRegistry()
			s, err := workqueue.NewSource("http://source.invalid", mustMemory(t), workqueue.WithRegisterer(reg),
				workqueue.WithSourceHTTPClient(&http.Client{Transport: &stoppingTransport{cancel: cancel, answer: tc.answer}}))
			if err != nil {
				t.Fatal(err)
			}
			if n, err := s.Poll(ctx); n != 0 || !errors.Is(err, context.Canceled) {
				t.Fatalf("Poll stopped during the item's GET = %d, %v; want 0 and context.Canceled", n, err)
			}
			checkSourceMetrics(t, reg, tc.want)
		})
	}
}

// TestRegistrationErrorsSayWhy: a constructor's registration error tells a component of its kind
// registered already under the same name (or unnamed, as it is) from a clash with a metric of the
// user's: only the first is fixed by the component's name option.
func TestRegistrationErrorsSayWhy(t *testing.T) {
	srv := httptest.NewServer(http.NotFoundHandler())
	defer srv.Close()
	handler := workqueue.HandlerFunc(func(context.Context, *workqueue.Item) error { return nil })
	for _, tc := range []struct {
		what, option, metric string
		make                 func(t *testing.T, reg prometheus.Registerer, name string) error
	}{
		{"pool", "WithPoolName", "podblocks_workqueue_dead_letters_total", func(t *testing.T, reg prometheus.Registerer, name string) error {
			_, err := workqueue.NewPool(mustMemory(t), handler, workqueue.WithRegisterer(reg), workqueue.WithPoolName(name))
			return err
		}},
		{"Source", "WithSourceName", "podblocks_workqueue_source_add_errors_total", func(t *testing.T, reg prometheus.Registerer, name string) error {
			_, err := workqueue.NewSource(srv.URL, mustMemory(t), workqueue.WithRegisterer(reg), workqueue.WithSourceName(name))
			return err
		}},
		{"queue", "WithQueueName", "podblocks_workqueue_queue_added_total", func(t *testing.T, reg prometheus.Registerer, name string) error {
			q, err := workqueue.NewMemory(workqueue.WithRegisterer(reg), workqueue.WithQueueName(name))
			if err == nil {
				t.Cleanup(func() { q.Close() })
			}
			return err
		}},
		{"stage", "WithStageName", "podblocks_workqueue_stage_held_items", func(t *testing.T, reg prometheus.Registerer, name string) error {
			opts := []workqueue.StageOption{workqueue.WithRegisterer(reg)}
			if name != "" {
				opts = append(opts, workqueue.WithStageName(name))
			}
			_, err := workqueue.NewCopier(mustMemory(t), []workqueue.Queue{mustMemory(t)}, opts...)
			return err
		}},
	} {
		t.Run(tc.what, func(t *testing.T) {
			user := prometheus.NewRegistry()
			user.MustRegister(prometheus.NewCounter(prometheus.CounterOpts{Name: tc.metric, Help: "The user's own."}))
			err := tc.make(t, user, "")
			if err == nil || strings.Contains(err.Error(), "registered already (") || !strings.Contains(err.Error(), "other labels or help") ||
				!strings.Contains(err.Error(), tc.metric) {
				t.Errorf("clash with the user's %s: %v; want an error naming it as a metric with other labels or help, not a %s registered already", tc.metric, err, tc.what)
			}
			for _, name := range []string{"", "a"} {
				reg := prometheus.NewRegistry()
				if err := tc.make(t, reg, name); err != nil {
					t.Fatal(err)
				}
				want := fmt.Sprintf("a %s named %q is registered already", tc.what, name)
				if name == "" {
					want = "an unnamed " + tc.what + " is registered already"
				}
				if name == "" && tc.what == "stage" {
					want = `a stage named "copier" is registered already` // a stage's name defaults to its kind
				}
				var dup prometheus.AlreadyRegisteredError
				if err := tc.make(t, reg, name); !errors.As(err, &dup) || !strings.Contains(err.Error(), want) || !strings.Contains(err.Error(), tc.option) {
					t.Errorf("a second %s named %q: %v; want the registerer's AlreadyRegisteredError, saying %q and naming %s", tc.what, name, err, want, tc.option)
				}
			}
		})
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
	checkSourceMetrics(t, reg, sourceCounts{added: 0, addErrors: 0, lists: 2, listErrors: 2, items: 0, itemErrors: 0})
}
