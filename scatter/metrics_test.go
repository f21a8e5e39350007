package scatter_test

import (
	"context"
	"fmt"
	"math"
	"sort"
	"strings"
	"testing"
	"testing/synctest"

	"github.com/podblocks/podblocks/scatter"
	"github.com/prometheus/client_golang/prometheus"
)

func TestMetrics(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		reg := prometheus.NewRegistry()
		p := &probe{}
		f, err := scatter.New(leavesOf(p, behaviour{d: ms(1)}, behaviour{d: ms(3)}, behaviour{d: ms(1), fail: true}), sum,
			scatter.WithRegisterer(reg), scatter.WithName("search"))
		if err != nil {
			t.Fatal(err)
		}
		// A second fan-out with another name shares the registry.
		if _, err := scatter.New(leavesOf(p, behaviour{}), sum, scatter.WithRegisterer(reg), scatter.WithName("other")); err != nil {
			t.Fatalf("second fan-out: %v", err)
		}
		// The same name twice is a registration error, not a panic.
		if _, err := scatter.New(leavesOf(p, behaviour{}), sum, scatter.WithRegisterer(reg), scatter.WithName("search")); err == nil {
			t.Error("registering the same name twice succeeded")
		}
		for range 2 {
			if _, err := f.Do(context.Background(), 1); err != nil {
				t.Fatal(err)
			}
		}
		got := gather(t, reg, "search")
		want := map[string]float64{
			`podblocks_scatter_fanouts_total{end="all"}`:           2,
			`podblocks_scatter_fanouts_total{end="quorum"}`:        0,
			`podblocks_scatter_leaf_results_total{status="ok"}`:    4,
			`podblocks_scatter_leaf_results_total{status="error"}`: 2,
			`podblocks_scatter_leaf_duration_seconds{le="0.001"}`:  4, // 1ms answers (ok and error)
			`podblocks_scatter_leaf_duration_seconds{le="0.005"}`:  6,
			`podblocks_scatter_leaf_duration_seconds_count`:        6,
			`podblocks_scatter_leaf_duration_seconds_sum`:          0.01,
			`podblocks_scatter_coverage_ratio_count`:               2,
		}
		for k, v := range want {
			if g, ok := got[k]; !ok || math.Abs(g-v) > 1e-9 {
				t.Errorf("%s = %v (present %v), want %v", k, g, ok, v)
			}
		}
		title, header, rows := f.Statusz()
		if title != "scatter search" || len(header) != 2 || rows[2][0] != "fan-outs" || rows[2][1] != "2" {
			t.Errorf("Statusz = %q %v %v", title, header, rows)
		}
	})
}

// gather flattens the registry's metrics of one fan-out into "name{label="v"}" -> value.
func gather(t *testing.T, reg *prometheus.Registry, fanout string) map[string]float64 {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]float64{}
	for _, mf := range mfs {
		for _, m := range mf.GetMetric() {
			var labels []string
			mine := false
			for _, l := range m.GetLabel() {
				if l.GetName() == "fanout" {
					mine = l.GetValue() == fanout
					continue
				}
				labels = append(labels, l.GetName()+"=\""+l.GetValue()+"\"")
			}
			if !mine {
				continue
			}
			sort.Strings(labels)
			key := func(name string, extra ...string) string {
				ls := append(append([]string{}, labels...), extra...)
				if len(ls) == 0 {
					return name
				}
				return name + "{" + strings.Join(ls, ",") + "}"
			}
			switch {
			case m.Counter != nil:
				out[key(mf.GetName())] = m.Counter.GetValue()
			case m.Histogram != nil:
				out[key(mf.GetName()+"_count")] = float64(m.Histogram.GetSampleCount())
				out[key(mf.GetName()+"_sum")] = m.Histogram.GetSampleSum()
				for _, b := range m.Histogram.GetBucket() {
					out[key(mf.GetName(), fmt.Sprintf("le=%q", fmt.Sprint(b.GetUpperBound())))] = float64(b.GetCumulativeCount())
				}
			}
		}
	}
	return out
}
