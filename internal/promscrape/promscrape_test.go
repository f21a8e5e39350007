package promscrape_test

import (
	"errors"
	"fmt"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/goleak"

	"github.com/podblocks/podblocks/internal/promscrape"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

func TestLines(t *testing.T) {
	reg := prometheus.NewRegistry()
	c := prometheus.NewCounterVec(prometheus.CounterOpts{Name: "jobs_total", Help: "Jobs."}, []string{"state"})
	g := prometheus.NewGauge(prometheus.GaugeOpts{Name: "other", Help: "Not asked for."})
	reg.MustRegister(c, g)
	c.WithLabelValues("done").Add(3)
	c.WithLabelValues("failed").Inc()
	want := []string{"# TYPE jobs_total counter", `jobs_total{state="done"} 3`, `jobs_total{state="failed"} 1`}
	if diff := cmp.Diff(want, promscrape.Lines(t, reg, "jobs_", "# TYPE jobs_")); diff != "" {
		t.Errorf("lines (-want +got):\n%s", diff)
	}
}

// failing is a collector whose metric cannot be made, as a broken collector in production.
type failing struct{ d *prometheus.Desc }

func (f failing) Describe(ch chan<- *prometheus.Desc) { ch <- f.d }
func (f failing) Collect(ch chan<- prometheus.Metric) {
	ch <- prometheus.NewInvalidMetric(f.d, errors.New("broken"))
}

// recorder is a testing.TB that records Errorf instead of failing.
type recorder struct {
	testing.TB
	errs []string
}

func (r *recorder) Helper() {}
func (r *recorder) Errorf(format string, args ...any) {
	r.errs = append(r.errs, fmt.Sprintf(format, args...))
}

func TestLinesFailsOnAFailedScrape(t *testing.T) {
	reg := prometheus.NewRegistry()
	reg.MustRegister(failing{prometheus.NewDesc("broken", "Broken.", nil, nil)})
	r := &recorder{TB: t}
	promscrape.Lines(r, reg, "broken")
	if len(r.errs) != 1 {
		t.Errorf("a scrape of a failing collector reported %q, want one error", r.errs)
	}
}
