package statsd

import (
	"errors"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

const testMapping = `
defaults:
  observer_type: histogram
  ttl: 0s
mappings:
- match: "test.dispatcher.*.*.*"
  name: "dispatcher_events_total"
  labels:
    processor: "$1"
    action: "$2"
    outcome: "$3"
    job: "test_dispatcher"
- match: "*.signup.*.*"
  name: "signup_events_total"
  help: "Signups."
  labels:
    provider: "$2"
    outcome: "${3}"
    job: "${1}_server"
- match: "typed.*"
  match_metric_type: gauge
  name: "typed_gauge"
- match: "typed.*"
  name: "typed_other"
- match: "noisy.*"
  name: "dropped"
  action: drop
- match: "a.*.c"
  name: "first_wins"
- match: "a.b.*"
  name: "second"
- match: "bad.*"
  name: "x${7}y"
- match: 'regex\.(\w+)\.(?P<kind>\w+)'
  match_type: regex
  name: "regex_${1}_total"
  labels:
    kind: "$kind"
- match: 'timer\.(.*)'
  match_type: regex
  match_metric_type: observer
  name: "timer_seconds"
  summary_options:
    quantiles:
    - quantile: 0.5
      error: 0.01
  observer_type: summary
  ttl: 1m
`

func TestMap(t *testing.T) {
	cfg, err := ParseMappingConfig([]byte(testMapping))
	if err != nil {
		t.Fatal(err)
	}
	type res struct {
		Name    string
		Labels  []Label
		Mapped  bool
		Drop    bool
		Mapping int
	}
	cases := []struct {
		name string
		typ  Type
		want res
	}{
		{"test.dispatcher.FooProcessor.send.success", Counter, res{"dispatcher_events_total", []Label{
			{"action", "send"}, {"job", "test_dispatcher"}, {"outcome", "success"}, {"processor", "FooProcessor"}}, true, false, 0}},
		{"foo_product.signup.facebook.failure", Counter, res{"signup_events_total", []Label{
			{"job", "foo_product_server"}, {"outcome", "failure"}, {"provider", "facebook"}}, true, false, 1}},
		{"typed.x", Gauge, res{"typed_gauge", nil, true, false, 2}},
		{"typed.x", Set, res{"typed_gauge", nil, true, false, 2}},
		{"typed.x", Counter, res{"typed_other", nil, true, false, 3}},
		{"noisy.thing", Counter, res{"dropped", nil, true, true, 4}},
		{"a.b.c", Counter, res{"first_wins", nil, true, false, 5}},
		{"a.b.d", Counter, res{"second", nil, true, false, 6}},
		{"bad.z", Counter, res{"xy", nil, true, false, 7}},
		{"regex.get.fast", Counter, res{"regex_get_total", []Label{{"kind", "fast"}}, true, false, 8}},
		{"timer.x.y", Timer, res{"timer_seconds", nil, true, false, 9}},
		{"timer.x.y", Counter, res{"timer_x_y", nil, false, false, -1}},
		{"unmapped.metric-name", Counter, res{"unmapped_metric_name", nil, false, false, -1}},
		{"1st.metric", Counter, res{"_1st_metric", nil, false, false, -1}},
		{"test.dispatcher.too.few", Counter, res{"test_dispatcher_too_few", nil, false, false, -1}},
	}
	for _, tc := range cases {
		t.Run(tc.name+"/"+tc.typ.String(), func(t *testing.T) {
			m := cfg.Map(tc.name, tc.typ)
			got := res{Name: m.Name, Labels: m.Labels, Mapped: m.Mapping != nil, Drop: m.Drop(), Mapping: -1}
			if m.Mapping != nil {
				got.Mapping = m.Mapping.index
			}
			if diff := cmp.Diff(tc.want, got); diff != "" {
				t.Errorf("Map(%q, %s) (-want +got):\n%s", tc.name, tc.typ, diff)
			}
		})
	}
}

func TestMapDefaultsApplied(t *testing.T) {
	cfg, err := ParseMappingConfig([]byte(testMapping))
	if err != nil {
		t.Fatal(err)
	}
	if got := cfg.Mappings[0].ObserverType; got != ObserverHistogram {
		t.Errorf("mapping 0 observer type = %q, want the default histogram", got)
	}
	if diff := cmp.Diff(DefaultBuckets, cfg.Mappings[0].HistogramOptions.Buckets); diff != "" {
		t.Errorf("default buckets (-want +got):\n%s", diff)
	}
	if got := time.Duration(cfg.Mappings[9].TTL); got != time.Minute {
		t.Errorf("ttl = %v, want 1m", got)
	}
	if got := cfg.Mappings[9].SummaryOptions.Quantiles; len(got) != 1 || got[0].Quantile != 0.5 {
		t.Errorf("quantiles = %v, want the mapping's one", got)
	}
}

func TestMapGlobDisableOrdering(t *testing.T) {
	cfg, err := ParseMappingConfig([]byte(`
defaults:
  glob_disable_ordering: true
mappings:
- match: "a.*.*"
  name: "wild"
- match: "a.b.*"
  name: "specific"
`))
	if err != nil {
		t.Fatal(err)
	}
	if got := cfg.Map("a.b.c", Counter).Name; got != "specific" {
		t.Errorf("Map(a.b.c) = %q, want the more specific mapping", got)
	}
	if got := cfg.Map("a.x.c", Counter).Name; got != "wild" {
		t.Errorf("Map(a.x.c) = %q, want wild", got)
	}
}

func TestParseMappingConfigErrors(t *testing.T) {
	cases := []struct {
		name, yaml, field string
	}{
		{"unknown field", "mappings:\n- match: a.b\n  name: x\n  bogus: 1\n", "yaml"},
		{"no name", "mappings:\n- match: a.b\n", "name"},
		{"bad name", "mappings:\n- match: a.b\n  name: 'x-y'\n", "name"},
		{"bad glob", "mappings:\n- match: 'a..b'\n  name: x\n", "match"},
		{"partial glob", "mappings:\n- match: 'a.b*'\n  name: x\n", "match"},
		{"bad regex", "mappings:\n- match: '('\n  match_type: regex\n  name: x\n", "match"},
		{"bad label", "mappings:\n- match: a.b\n  name: x\n  labels:\n    'a-b': c\n", "labels.a-b"},
		{"reserved label", "mappings:\n- match: a.b\n  name: x\n  labels:\n    '__a': c\n", "labels.__a"},
		{"bad action", "mappings:\n- match: a.b\n  name: x\n  action: keep\n", "action"},
		{"bad metric type", "mappings:\n- match: a.b\n  name: x\n  match_metric_type: timer\n", "match_metric_type"},
		{"histogram with summary options", "mappings:\n- match: a.b\n  name: x\n  observer_type: histogram\n  summary_options: {max_age: 1m}\n", "summary_options"},
		{"unsorted buckets", "mappings:\n- match: a.b\n  name: x\n  observer_type: histogram\n  histogram_options: {buckets: [2, 1]}\n", "histogram_options.buckets"},
		{"bad quantile", "mappings:\n- match: a.b\n  name: x\n  summary_options: {quantiles: [{quantile: 2, error: 0.1}]}\n", "summary_options.quantiles"},
		{"bad observer default", "defaults:\n  observer_type: gauge\n", "defaults.observer_type"},
		{"bad match type", "mappings:\n- match: a.b\n  name: x\n  match_type: fuzzy\n", "match_type"},
		{"bad duration", "mappings:\n- match: a.b\n  name: x\n  ttl: soon\n", "yaml"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			_, err := ParseMappingConfig([]byte(tc.yaml))
			var ce *ConfigError
			if !errors.As(err, &ce) {
				t.Fatalf("ParseMappingConfig error = %v, want a *ConfigError", err)
			}
			if ce.Field != tc.field {
				t.Errorf("ConfigError.Field = %q, want %q (error: %v)", ce.Field, tc.field, err)
			}
		})
	}
}

func TestDurations(t *testing.T) {
	cfg, err := ParseMappingConfig([]byte("defaults:\n  ttl: 0\nmappings:\n- match: a.*\n  name: a\n  ttl: 1500000000\n" +
		"- match: b.*\n  name: b\n  ttl: 2m\n  summary_options: {max_age: 30s}\n"))
	if err != nil {
		t.Fatal(err)
	}
	got := []time.Duration{time.Duration(cfg.Defaults.TTL), time.Duration(cfg.Mappings[0].TTL),
		time.Duration(cfg.Mappings[1].TTL), time.Duration(cfg.Mappings[1].SummaryOptions.MaxAge)}
	want := []time.Duration{0, 1500 * time.Millisecond, 2 * time.Minute, 30 * time.Second}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("durations (-want +got):\n%s", diff)
	}
}

func TestParseMappingConfigEmpty(t *testing.T) {
	cfg, err := ParseMappingConfig(nil)
	if err != nil {
		t.Fatal(err)
	}
	if got := cfg.Map("a.b", Counter).Name; got != "a_b" {
		t.Errorf("empty config Map = %q, want a_b", got)
	}
}

func TestEscapeName(t *testing.T) {
	cases := map[string]string{
		"ok_name": "ok_name", "a.b": "a_b", "a-b": "a_b", "a--b": "a_b", "a---b": "a_b", "a-_b": "a__b",
		"9lives": "_9lives", "héllo": "h_llo", "": "", "a b": "a_b",
	}
	for in, want := range cases {
		if got := EscapeName(in); got != want {
			t.Errorf("EscapeName(%q) = %q, want %q", in, got, want)
		}
	}
	if n := testing.AllocsPerRun(100, func() { EscapeName("already_valid_name") }); n != 0 {
		t.Errorf("EscapeName of a valid name allocates %v times", n)
	}
}

func TestTemplate(t *testing.T) {
	caps := []string{"whole", "one", "two"}
	cases := map[string]string{
		"plain": "plain", "$1": "one", "${2}_x": "two_x", "a$1b": "a", "x_${1}y": "x_oney",
		"$0": "whole", "$9": "", "$": "$", "${": "${", "$$1": "",
	}
	for in, want := range cases {
		if got := parseTemplate(in).expand(caps); got != want {
			t.Errorf("template %q = %q, want %q", in, got, want)
		}
	}
}

// FuzzGlob compiles a glob mapping and matches a name against it: neither may panic, a match
// must have as many components as the glob, and literal components must be equal.
func FuzzGlob(f *testing.F) {
	f.Add("a.*.c", "a.b.c", "x_$1")
	f.Add("*.signup.*.*", "p.signup.f.fail", "${1}_${3}")
	f.Add("a", "a", "a")
	f.Add("*", "", "$0")
	f.Fuzz(func(t *testing.T, glob, name, tmpl string) {
		cfg, err := ParseMappingConfig([]byte("mappings:\n- match: " + quoteYAML(glob) + "\n  name: m\n  labels:\n    l: " + quoteYAML(tmpl) + "\n"))
		if err != nil {
			return
		}
		m := cfg.Map(name, Counter)
		if m.Mapping == nil {
			return
		}
		if len(cfg.Mappings[0].glob) != len(splitDots(name)) {
			t.Errorf("glob %q matched %q with a different number of components", glob, name)
		}
		for i, g := range cfg.Mappings[0].glob {
			if g != "*" && g != splitDots(name)[i] {
				t.Errorf("glob %q matched %q but component %d differs", glob, name, i)
			}
		}
	})
}

func splitDots(s string) []string {
	var out []string
	for {
		i := indexByte(s, '.')
		if i < 0 {
			return append(out, s)
		}
		out = append(out, s[:i])
		s = s[i+1:]
	}
}

func indexByte(s string, c byte) int {
	for i := 0; i < len(s); i++ {
		if s[i] == c {
			return i
		}
	}
	return -1
}

func quoteYAML(s string) string {
	b := []byte{'"'}
	for _, r := range s {
		switch {
		case r == '"' || r == '\\':
			b = append(b, '\\', byte(r))
		case r < 0x20 || r == 0x7f:
			b = append(b, []byte("\\x")...)
			b = append(b, "0123456789abcdef"[r>>4], "0123456789abcdef"[r&15])
		default:
			b = append(b, string(r)...)
		}
	}
	return string(append(b, '"'))
}
