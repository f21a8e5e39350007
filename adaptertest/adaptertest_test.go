package adaptertest_test

import (
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"go.uber.org/goleak"

	"github.com/podblocks/podblocks/adaptertest"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

func TestValuesAndScrape(t *testing.T) {
	reg := prometheus.NewRegistry()
	c := prometheus.NewCounterVec(prometheus.CounterOpts{Name: "c_total", Help: "h"}, []string{"b", "a"})
	h := prometheus.NewHistogram(prometheus.HistogramOpts{Name: "h", Help: "h", Buckets: []float64{1}})
	s := prometheus.NewSummary(prometheus.SummaryOpts{Name: "s", Help: "h", Objectives: map[float64]float64{0.5: 0.01}})
	reg.MustRegister(c, h, s)
	c.WithLabelValues("2", "1").Add(3)
	h.Observe(0.5)
	h.Observe(2)
	s.Observe(4)
	want := map[string]float64{
		`c_total{a="1",b="2"}`: 3,
		`h_bucket{le="1"}`:     1, `h_bucket{le="+Inf"}`: 2, "h_count": 2, "h_sum": 2.5,
		`s{quantile="0.5"}`: 4, "s_count": 1, "s_sum": 4,
	}
	got, err := adaptertest.Values(reg)
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("Values (-want +got):\n%s", diff)
	}
	srv := httptest.NewServer(promhttp.HandlerFor(reg, promhttp.HandlerOpts{}))
	defer srv.Close()
	scraped, err := adaptertest.Scrape(srv.URL)
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(want, scraped); diff != "" {
		t.Errorf("Scrape (-want +got):\n%s", diff)
	}
	if got := adaptertest.Sum(got, "h_bucket"); got != 3 {
		t.Errorf("Sum(h_bucket) = %v, want 3", got)
	}
	if _, err := adaptertest.ParseText(strings.NewReader("not an exposition {")); err == nil {
		t.Error("ParseText of garbage succeeded")
	}
	srv.Close()
	if _, err := adaptertest.Scrape(srv.URL); err == nil {
		t.Error("Scrape of a closed server succeeded")
	}
}
