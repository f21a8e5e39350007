package main

import (
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/prometheus/statsd_exporter/pkg/mapper"

	"github.com/podblocks/podblocks/adapter/statsd"
)

// compatMapping exercises the mapping features both implementations share.
const compatMapping = `
defaults:
  observer_type: histogram
mappings:
- match: "test.dispatcher.*.*.*"
  name: "dispatcher_events_total"
  labels: {processor: "$1", action: "$2", outcome: "$3", job: "test_dispatcher"}
- match: "*.signup.*.*"
  name: "signup_events_total"
  labels: {provider: "$2", outcome: "${3}", job: "${1}_server"}
- match: "typed.*"
  match_metric_type: gauge
  name: "typed_gauge"
- match: "typed.*"
  name: "typed_other_$1"
- match: "noisy.*"
  name: "dropped"
  action: drop
- match: "a.*.c"
  name: "first_wins"
- match: "a.b.*"
  name: "second"
- match: "x.*.y.*"
  name: "x_${2}_${1}_$9"
- match: 'regex\.(\w+)\.(\w+)'
  match_type: regex
  name: "regex_${1}_total"
  labels: {kind: "$2"}
- match: 'timer\.(.*)'
  match_type: regex
  match_metric_type: observer
  name: "timer_seconds"
`

// TestMappingMatchesStatsdExporter maps the same names with statsd_exporter's own mapper and with
// podblocks' and compares the outcome (matched, name after escaping, labels, drop).
func TestMappingMatchesStatsdExporter(t *testing.T) {
	ours, err := statsd.ParseMappingConfig([]byte(compatMapping))
	if err != nil {
		t.Fatal(err)
	}
	theirs := &mapper.MetricMapper{}
	if err := theirs.InitFromYAMLString(compatMapping); err != nil {
		t.Fatal(err)
	}
	names := []string{
		"test.dispatcher.FooProcessor.send.success", "test.dispatcher.too.few", "foo_product.signup.facebook.failure",
		"typed.x", "noisy.thing", "a.b.c", "a.b.d", "a.x.c", "x.1.y.2", "regex.get.fast", "timer.a.b",
		"unmapped.metric-name", "1st.metric", "a--b.c", "weird.ü.name", "",
	}
	for _, n := range names {
		compareMapping(t, ours, theirs, n)
	}
}

// FuzzMappingMatchesStatsdExporter compares the two mappers on arbitrary names.
func FuzzMappingMatchesStatsdExporter(f *testing.F) {
	for _, n := range []string{"test.dispatcher.FooProcessor.send.success", "a.b.c", "x.1.y.2", "a..c", "typed.", ".a"} {
		f.Add(n)
	}
	ours, err := statsd.ParseMappingConfig([]byte(compatMapping))
	if err != nil {
		f.Fatal(err)
	}
	theirs := &mapper.MetricMapper{}
	if err := theirs.InitFromYAMLString(compatMapping); err != nil {
		f.Fatal(err)
	}
	f.Fuzz(func(t *testing.T, name string) {
		if !utf8.ValidString(name) {
			return // both parsers reject such lines before mapping
		}
		compareMapping(t, ours, theirs, name)
	})
}

func compareMapping(t *testing.T, ours *statsd.MappingConfig, theirs *mapper.MetricMapper, n string) {
	t.Helper()
	types := map[statsd.Type]mapper.MetricType{
		statsd.Counter: mapper.MetricTypeCounter, statsd.Gauge: mapper.MetricTypeGauge, statsd.Timer: mapper.MetricTypeObserver,
	}
	type outcome struct {
		Matched, Drop bool
		Name          string
		Labels        []string
	}
	{
		for ot, tt := range types {
			m, labels, ok := theirs.GetMapping(n, tt)
			want := outcome{Matched: ok, Name: mapper.EscapeMetricName(n)}
			if ok {
				want.Name = mapper.EscapeMetricName(m.Name)
				want.Drop = m.Action == mapper.ActionTypeDrop
				for k, v := range labels {
					want.Labels = append(want.Labels, k+"="+v)
				}
			}
			slices.Sort(want.Labels)
			g := ours.Map(n, ot)
			got := outcome{Matched: g.Mapping != nil, Drop: g.Drop(), Name: g.Name}
			for _, l := range g.Labels {
				got.Labels = append(got.Labels, l.Name+"="+l.Value)
			}
			slices.Sort(got.Labels)
			if !reflect.DeepEqual(want, got) {
				t.Errorf("%q as %s: statsd_exporter %+v, podblocks %+v", n, tt, want, got)
			}
		}
	}
}

// TestExampleConfigParses reads statsd_exporter's own example mapping config with podblocks.
func TestExampleConfigParses(t *testing.T) {
	out, err := exec.Command("go", "list", "-m", "-f", "{{.Dir}}", "github.com/prometheus/statsd_exporter").Output()
	if err != nil {
		t.Skipf("cannot locate the statsd_exporter module: %v", err)
	}
	path := filepath.Join(strings.TrimSpace(string(out)), "config.example.yml")
	data, err := os.ReadFile(path)
	if err != nil {
		t.Skipf("no example config: %v", err)
	}
	if err := (&mapper.MetricMapper{}).InitFromYAMLString(string(data)); err != nil {
		t.Fatalf("statsd_exporter rejects its own example: %v", err)
	}
	if _, err := statsd.ParseMappingConfig(data); err != nil {
		t.Errorf("podblocks rejects statsd_exporter's example config: %v", err)
	}
}
