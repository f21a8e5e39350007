package main

import (
	"fmt"
	"log/slog"
	"math"
	"slices"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/statsd_exporter/pkg/event"
	"github.com/prometheus/statsd_exporter/pkg/exporter"
	"github.com/prometheus/statsd_exporter/pkg/line"
	"github.com/prometheus/statsd_exporter/pkg/mapper"

	"github.com/podblocks/podblocks/adapter/statsd"
)

// exposition flattens gathered families to "name{labels} value" lines (histogram buckets, sums
// and counts; summary counts and sums), sorted, leaving out names with the given prefix.
func exposition(mfs []*dto.MetricFamily, skip string) []string {
	var out []string
	for _, mf := range mfs {
		if strings.HasPrefix(mf.GetName(), skip) {
			continue
		}
		for _, m := range mf.GetMetric() {
			var ls []string
			for _, l := range m.GetLabel() {
				ls = append(ls, l.GetName()+"="+l.GetValue())
			}
			slices.Sort(ls)
			key := mf.GetName() + "{" + strings.Join(ls, ",") + "}"
			add := func(suffix string, v float64) {
				out = append(out, fmt.Sprintf("%s%s %.6g", key, suffix, v))
			}
			switch {
			case m.Counter != nil:
				add("", m.Counter.GetValue())
			case m.Gauge != nil:
				add("", m.Gauge.GetValue())
			case m.Histogram != nil:
				add(" count", float64(m.Histogram.GetSampleCount()))
				add(" sum", m.Histogram.GetSampleSum())
				for _, b := range m.Histogram.GetBucket() {
					if !math.IsInf(b.GetUpperBound(), 1) {
						add(fmt.Sprintf(" le=%g", b.GetUpperBound()), float64(b.GetCumulativeCount()))
					}
				}
			case m.Summary != nil:
				add(" count", float64(m.Summary.GetSampleCount()))
				add(" sum", m.Summary.GetSampleSum())
			}
		}
	}
	slices.Sort(out)
	return out
}

// TestExpositionMatchesStatsdExporter sends the same lines through statsd_exporter's parser,
// mapper and exporter and through podblocks', and compares what /metrics would show.
func TestExpositionMatchesStatsdExporter(t *testing.T) {
	const cfgYAML = `
mappings:
- match: "api.*.latency"
  name: "api_latency_seconds"
  observer_type: histogram
  histogram_options: {buckets: [0.1, 1]}
  labels: {endpoint: "$1"}
- match: "api.*.hits"
  name: "api_hits_total"
  honor_labels: true
  labels: {endpoint: "$1", env: "prod"}
- match: "scaled.*"
  name: "scaled"
  scale: 0.001
- match: "drop.*"
  name: "x"
  action: drop
- match: 'job\.(\w+)\.runs'
  match_type: regex
  name: "job_runs_total"
  labels: {job: "$1"}
`
	lines := []string{
		"api.users.latency:50|ms", "api.users.latency:500|ms|@0.5", "api.users.latency:2|h|#region:eu",
		"api.users.hits:1|c|#env:dev", "api.users.hits:3|c|@0.5", "api.orders.hits:2|c",
		"gauge:10|g", "gauge:+5|g", "gauge:-3|g", "scaled.x:2000|g", "drop.me:1|c", "neg:-1|c",
		"t:1|ms", "t:3|ms|#a:b", "job.backup.runs:1|c", "job.backup.runs:1|c", "unmapped.metric-name:4|c",
		"req,code=200:1|c", "req#code=500:1|c", "req.[code=404]x:1|c", "multi:1|c:2|c", "agg:1:2:3|d",
		"tagged:1|c|#a:1,b:2", "tagged:1|c|#b:2,a:1", "bad line", "x:abc|c",
	}

	theirReg := prometheus.NewRegistry()
	m := &mapper.MetricMapper{}
	if err := m.InitFromYAMLString(cfgYAML); err != nil {
		t.Fatal(err)
	}
	cv := func(name string, labels ...string) *prometheus.CounterVec {
		return prometheus.NewCounterVec(prometheus.CounterOpts{Name: name, Help: name}, labels)
	}
	ex := exporter.NewExporter(theirReg, m, slog.New(slog.DiscardHandler), cv("a", "action"),
		prometheus.NewCounter(prometheus.CounterOpts{Name: "b", Help: "b"}), cv("c", "reason"), cv("d", "type"),
		cv("e", "type", "metric_name"), prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: "f", Help: "f"}, []string{"type"}))
	p := line.NewParser()
	p.EnableDogstatsdParsing()
	p.EnableInfluxdbParsing()
	p.EnableLibratoParsing()
	p.EnableSignalFXParsing()
	ch := make(chan event.Events, len(lines))
	c := prometheus.NewCounter(prometheus.CounterOpts{Name: "g", Help: "g"})
	for _, l := range lines {
		ch <- p.LineToEvents(l, *cv("h", "reason"), c, c, c, slog.New(slog.DiscardHandler))
	}
	close(ch)
	ex.Listen(ch)
	theirs, err := theirReg.Gather()
	if err != nil {
		t.Fatal(err)
	}

	cfg, err := statsd.ParseMappingConfig([]byte(cfgYAML))
	if err != nil {
		t.Fatal(err)
	}
	e, err := statsd.New(statsd.WithMapping(cfg))
	if err != nil {
		t.Fatal(err)
	}
	e.Handle([]byte(strings.Join(lines, "\n")))
	ours, _ := e.Gather()

	want, got := exposition(theirs, "podblocks_"), exposition(ours, "podblocks_")
	if !slices.Equal(want, got) {
		t.Errorf("expositions differ\nstatsd_exporter:\n  %s\npodblocks:\n  %s", strings.Join(want, "\n  "), strings.Join(got, "\n  "))
	}
}
