package statsd_test

import (
	"bytes"
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
