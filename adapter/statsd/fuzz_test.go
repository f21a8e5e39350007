package statsd_test

import (
	"bytes"
	"errors"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"

	"github.com/podblocks/podblocks/adapter/statsd"
)

// FuzzHandle feeds arbitrary packets through the whole pipeline (parser, mapper, registry) and
// checks the property statsd_exporter lacks: whatever arrives, the exposition stays valid.
func FuzzHandle(f *testing.F) {
	for _, s := range []string{
		"a:1|c\na:1|g", "x.y:1|ms|#le:1,quantile:2", "t:1|h\nt_count:1|c", "api.users.latency:5|ms|@0.1",
		"s:v|s\ns:1|g", "a,b=c:1|c", "a#b=c:1|c", "a.[b=c]d:1|c", "_e{1,1}:a|b", "__x:1|c|#__y:1,9z:2",
		"bad\xff:1|c", "q:NaN|g", "q:+Inf|c", "m:1:2:3|d|#a:b",
		"l:1|c|#a:1\nl:1|c|#b:2\nl:1|c\nh:1|ms|#a:1\nh:1|ms", // one family, several label sets
	} {
		f.Add(s)
	}
	cfg, err := statsd.ParseMappingConfig([]byte(`
mappings:
- match: "api.*.latency"
  name: "api_${1}_seconds"
  observer_type: histogram
- match: "x.*"
  name: "x_$1"
  labels: {le: "$1"}
`))
	if err != nil {
		f.Fatal(err)
	}
	f.Fuzz(func(t *testing.T, packet string) {
		e, err := statsd.New(statsd.WithMapping(cfg))
		if err != nil {
			t.Fatal(err)
		}
		e.Handle([]byte(packet))
		mfs, err := e.Gather()
		if err != nil {
			t.Fatalf("Gather: %v", err)
		}
		// client_golang's own consistency checks (names, label names, duplicates, suffixes).
		if _, err := (prometheus.Gatherers{e}).Gather(); err != nil {
			t.Fatalf("packet %q: Gatherers reports: %v", packet, err)
		}
		var buf bytes.Buffer
		enc := expfmt.NewEncoder(&buf, expfmt.NewFormat(expfmt.TypeTextPlain))
		for _, mf := range mfs {
			if err := enc.Encode(mf); err != nil {
				t.Fatalf("encode %s: %v", mf.GetName(), err)
			}
		}
		p := expfmt.NewTextParser(model.LegacyValidation)
		if _, err := p.TextToMetricFamilies(strings.NewReader(buf.String())); err != nil {
			t.Fatalf("packet %q gave an invalid exposition: %v\n%s", packet, err, buf.String())
		}
	})
}

// FuzzParseMappingConfig: a mapping config is refused with a *ConfigError, and an accepted one
// maps any name of any type to a valid metric name with valid, distinct label names.
func FuzzParseMappingConfig(f *testing.F) {
	for _, s := range []string{
		"mappings:\n- match: \"api.*.latency\"\n  name: \"api_${1}_seconds\"\n  observer_type: histogram\n  labels: {svc: \"$1\"}\n",
		"defaults:\n  match_type: regex\nmappings:\n- match: '^a\\.(\\w+)$'\n  name: 'x_$1'\n  labels: {k: '${1}'}\n",
		"defaults:\n  glob_disable_ordering: true\nmappings:\n- match: a.*\n  name: b\n- match: '*.b'\n  name: c\n  action: drop\n",
		"mappings:\n- match: a\n  name: '${9}'\n", "mappings:\n- match: 'a.b'\n  name: '1bad'\n", "defaults: {ttl: 1m}\nmappings: []\n",
	} {
		f.Add(s, "api.users.latency")
	}
	f.Fuzz(func(t *testing.T, y, name string) {
		c, err := statsd.ParseMappingConfig([]byte(y))
		if err != nil {
			var ce *statsd.ConfigError
			if !errors.As(err, &ce) {
				t.Fatalf("ParseMappingConfig error %v is not a *ConfigError", err)
			}
			return
		}
		if name == "" {
			return // the parser refuses a line without a name
		}
		for typ := statsd.Counter; typ <= statsd.Set; typ++ {
			m := c.Map(name, typ)
			if m.Drop() {
				continue
			}
			if !model.LegacyValidation.IsValidMetricName(m.Name) {
				t.Errorf("Map(%q, %v) = name %q, not a metric name", name, typ, m.Name)
			}
			seen := map[string]bool{}
			for _, l := range m.Labels {
				if !model.LegacyValidation.IsValidLabelName(l.Name) || seen[l.Name] {
					t.Errorf("Map(%q, %v): label %q invalid or repeated", name, typ, l.Name)
				}
				seen[l.Name] = true
			}
		}
	})
}
