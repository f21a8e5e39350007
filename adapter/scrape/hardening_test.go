package scrape_test

import (
	"context"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/podblocks/podblocks/adapter/scrape"
	"github.com/podblocks/podblocks/adaptertest"
)

func TestDecodeJSONTrailing(t *testing.T) {
	for _, in := range []string{`{"a":1}}`, `[1]]`, `1]`, `{"a":1} }`, `{"a":1} x`, `{} {}`} {
		if _, err := scrape.DecodeJSON([]byte(in)); err == nil {
			t.Errorf("DecodeJSON(%q) = nil error, want trailing data refused", in)
		}
	}
	for _, in := range []string{`{"a":1}`, " [1]\n", `1`} {
		if _, err := scrape.DecodeJSON([]byte(in)); err != nil {
			t.Errorf("DecodeJSON(%q): %v", in, err)
		}
	}
}

// staticProbe returns its samples for every target.
type staticProbe []scrape.Sample

func (p staticProbe) Probe(ctx context.Context, _ string) ([]scrape.Sample, error) {
	return p, ctx.Err()
}

// infoProbe returns what ParseRedisInfo makes of its text.
type infoProbe string

func (p infoProbe) Probe(context.Context, string) ([]scrape.Sample, error) {
	return scrape.ParseRedisInfo(string(p)), nil
}

func scrapeHandler(t *testing.T, h http.Handler, header ...string) map[string]float64 {
	t.Helper()
	rec := httptest.NewRecorder()
	req := httptest.NewRequest("GET", "/metrics?target=x", nil)
	for i := 0; i+1 < len(header); i += 2 {
		req.Header.Set(header[i], header[i+1])
	}
	h.ServeHTTP(rec, req)
	if rec.Code != http.StatusOK {
		t.Fatalf("scrape: %d %s", rec.Code, rec.Body)
	}
	got, err := adaptertest.ParseText(rec.Body)
	if err != nil {
		t.Fatalf("exposition does not parse: %v", err)
	}
	return got
}

// TestDroppedSamplesCounted: repeated series (a path over several items), samples that cannot be
// exposed and samples of the adapter's own names are dropped from the scrape and counted by reason.
func TestDroppedSamplesCounted(t *testing.T) {
	reg := prometheus.NewRegistry()
	e, err := scrape.New(staticProbe{
		{Name: "app_items", Type: prometheus.GaugeValue, Value: 1},
		{Name: "app_items", Type: prometheus.GaugeValue, Value: 2},
		{Name: "app_items", Type: prometheus.GaugeValue, Value: 3},
		{Name: "app_items", Type: prometheus.CounterValue, Value: 4},
		{Name: "bad-name", Type: prometheus.GaugeValue},
		{Name: "probe_success", Type: prometheus.GaugeValue, Value: 7},
	}, scrape.WithTarget("x"), scrape.WithRegisterer(reg))
	if err != nil {
		t.Fatal(err)
	}
	got := scrapeHandler(t, e.Handler())
	delete(got, "podblocks_adapter_scrape_duration_seconds")
	if diff := cmp.Diff(map[string]float64{"app_items": 1, "probe_success": 1}, got); diff != "" {
		t.Errorf("scrape (-want +got):\n%s", diff)
	}
	v, _ := adaptertest.Values(reg)
	want := map[string]float64{
		`podblocks_adapter_scrape_dropped_samples_total{reason="duplicate"}`: 2,
		`podblocks_adapter_scrape_dropped_samples_total{reason="conflict"}`:  1,
		`podblocks_adapter_scrape_dropped_samples_total{reason="invalid"}`:   1,
		`podblocks_adapter_scrape_dropped_samples_total{reason="reserved"}`:  1,
		`podblocks_adapter_scrape_probes_total{result="success"}`:            1,
	}
	if diff := cmp.Diff(want, v); diff != "" {
		t.Errorf("own metrics (-want +got):\n%s", diff)
	}
}

// TestInvalidUTF8Exposed: a label value or help that is not UTF-8 is repaired, so the sample is
// still exposed (redis_instance_info used to vanish with probe_success 1).
func TestInvalidUTF8Exposed(t *testing.T) {
	info := "# Server\r\nredis_version:7.0\xff\r\nconnected_clients:2\r\n"
	e, err := scrape.New(infoProbe(info), scrape.WithTarget("x"))
	if err != nil {
		t.Fatal(err)
	}
	got := scrapeHandler(t, e.Handler())
	key := `redis_instance_info{os="",redis_mode="",redis_version="7.0` + "\uFFFD" + `",role=""}`
	if got[key] != 1 || got["probe_success"] != 1 || got["redis_connected_clients"] != 2 {
		t.Errorf("scrape %v, want %s 1", got, key)
	}
	c := scrape.Clean([]scrape.Sample{{Name: "a", Help: "h\xff", Labels: []scrape.Label{{"l", "v\xfe"}}}})
	want := []scrape.Sample{{Name: "a", Help: "h\uFFFD", Labels: []scrape.Label{{"l", "v\uFFFD"}}}}
	if diff := cmp.Diff(want, c); diff != "" {
		t.Errorf("Clean (-want +got):\n%s", diff)
	}
}

func TestJSONProbeRedirectChecksAllow(t *testing.T) {
	internal := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.WriteString(w, `{"x":42}`)
	}))
	defer internal.Close()
	public := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/self" {
			http.Redirect(w, r, "/doc", http.StatusFound)
			return
		}
		if r.URL.Path == "/doc" {
			io.WriteString(w, `{"x":1}`)
			return
		}
		http.Redirect(w, r, internal.URL, http.StatusFound)
	}))
	defer public.Close()
	cfg, err := scrape.ParseJSONConfig([]byte("metrics:\n- name: app_x\n  path: '{.x}'\n"))
	if err != nil {
		t.Fatal(err)
	}
	e, err := scrape.New(&scrape.JSONProbe{Config: cfg}, scrape.WithAllowTargets(func(s string) bool {
		return strings.HasPrefix(s, public.URL+"/")
	}))
	if err != nil {
		t.Fatal(err)
	}
	probe := func(target string) map[string]float64 {
		rec := httptest.NewRecorder()
		e.ProbeHandler().ServeHTTP(rec, httptest.NewRequest("GET", "/probe?target="+target, nil))
		got, err := adaptertest.ParseText(rec.Body)
		if err != nil {
			t.Fatal(err)
		}
		delete(got, "podblocks_adapter_scrape_duration_seconds")
		return got
	}
	if diff := cmp.Diff(map[string]float64{"probe_success": 0}, probe(public.URL+"/away")); diff != "" {
		t.Errorf("allowed target redirecting to a forbidden one (-want +got):\n%s", diff)
	}
	if diff := cmp.Diff(map[string]float64{"probe_success": 1, "app_x": 1}, probe(public.URL+"/self")); diff != "" {
		t.Errorf("allowed target redirecting to an allowed one (-want +got):\n%s", diff)
	}
	// Handler's configured target is trusted, and so are its redirects: the rule is ProbeHandler's.
	h, err := scrape.New(&scrape.JSONProbe{Config: cfg}, scrape.WithTarget(public.URL+"/away"),
		scrape.WithAllowTargets(func(string) bool { return false }))
	if err != nil {
		t.Fatal(err)
	}
	got := scrapeHandler(t, h.Handler())
	delete(got, "podblocks_adapter_scrape_duration_seconds")
	if diff := cmp.Diff(map[string]float64{"probe_success": 1, "app_x": 42}, got); diff != "" {
		t.Errorf("Handler's target redirecting (-want +got):\n%s", diff)
	}
}

// slowProbe reports how long its context had.
type slowProbe struct{ left chan time.Duration }

func (p slowProbe) Probe(ctx context.Context, _ string) ([]scrape.Sample, error) {
	dl, ok := ctx.Deadline()
	if !ok {
		return nil, errors.New("no deadline")
	}
	p.left <- time.Until(dl)
	return []scrape.Sample{{Name: "x", Type: prometheus.GaugeValue, Value: 1}}, nil
}

// TestScrapeTimeoutHeader: the probe answers ScrapeTimeoutOffset before Prometheus gives up,
// also when the scrape timeout is the configured one or a little longer (the defaults: 10s and
// 10s); a header too short to leave a deadline is ignored rather than giving one already passed.
func TestScrapeTimeoutHeader(t *testing.T) {
	p := slowProbe{make(chan time.Duration, 1)}
	for _, tc := range []struct {
		timeout  time.Duration // 0: the default, 10s
		header   string
		min, max time.Duration
	}{
		{5 * time.Second, "", 4 * time.Second, 5 * time.Second},
		{5 * time.Second, "1e300", 4 * time.Second, 5 * time.Second},
		{5 * time.Second, "+Inf", 4 * time.Second, 5 * time.Second},
		{5 * time.Second, "NaN", 4 * time.Second, 5 * time.Second},
		{5 * time.Second, "3", 2 * time.Second, 2500 * time.Millisecond},  // 0.5s margin
		{5 * time.Second, "0.1", time.Millisecond, 50 * time.Millisecond}, // at least half: 50ms
		{0, "10", 8500 * time.Millisecond, 9500 * time.Millisecond},
		{0, "10.2", 8700 * time.Millisecond, 9700 * time.Millisecond},
		{0, "10.5", 9 * time.Second, 10 * time.Second},
		{0, "11", 9 * time.Second, 10 * time.Second},
		{0, "9.9", 8400 * time.Millisecond, 9400 * time.Millisecond},
		{0, "0.0009", 9 * time.Second, 10 * time.Second},       // under 1ms: ignored
		{0, "0.000000001", 9 * time.Second, 10 * time.Second},  // would give 0 after the margin
		{0, "0.0000000001", 9 * time.Second, 10 * time.Second}, // rounds to 0
		{0, "0.002", 500 * time.Microsecond, time.Millisecond}, // at least half
	} {
		opts := []scrape.Option{scrape.WithTarget("x")}
		if tc.timeout != 0 {
			opts = append(opts, scrape.WithTimeout(tc.timeout))
		}
		e, err := scrape.New(p, opts...)
		if err != nil {
			t.Fatal(err)
		}
		var got map[string]float64
		if tc.header == "" {
			got = scrapeHandler(t, e.Handler())
		} else {
			got = scrapeHandler(t, e.Handler(), "X-Prometheus-Scrape-Timeout-Seconds", tc.header)
		}
		left := <-p.left
		if got["probe_success"] != 1 || left < tc.min || left > tc.max {
			t.Errorf("timeout %v, header %q: probe_success %v, probe had %v, want in [%v, %v]", tc.timeout, tc.header, got["probe_success"], left, tc.min, tc.max)
		}
	}
}
