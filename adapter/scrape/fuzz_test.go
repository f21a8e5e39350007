package scrape_test

import (
	"encoding/json"
	"errors"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/podblocks/podblocks/adapter/scrape"
	"github.com/podblocks/podblocks/adaptertest"
)

// FuzzDecodeJSON: DecodeJSON accepts exactly the valid JSON texts, and what it decodes encodes
// back to a text it decodes to the same value.
func FuzzDecodeJSON(f *testing.F) {
	for _, s := range []string{doc, `{"a":1}}`, `[1]]`, `1]`, `1e400`, ` "x\ud800" `, `{} {}`, `-0.0`} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, in string) {
		d, err := scrape.DecodeJSON([]byte(in))
		if (err == nil) != json.Valid([]byte(in)) {
			t.Fatalf("DecodeJSON(%q) error %v, json.Valid %v", in, err, json.Valid([]byte(in)))
		}
		if err != nil {
			return
		}
		b, err := json.Marshal(d)
		if err != nil {
			t.Fatalf("Marshal(%#v): %v", d, err)
		}
		d2, err := scrape.DecodeJSON(b)
		if err != nil {
			t.Fatalf("DecodeJSON(%s) of a re-encoded document: %v", b, err)
		}
		if diff := cmp.Diff(d, d2); diff != "" {
			t.Errorf("round trip of %q (-first +second):\n%s", in, diff)
		}
	})
}

const fuzzConfig = "metrics:\n- name: a\n  path: '{.x}'\n  labels:\n    l: 'p-{.y}'\n"
const fuzzObjectConfig = "metrics:\n- name: q\n  type: object\n  path: '{.q[*]}'\n  labels: {n: '{.n}'}\n  values: {d: '{.d}'}\n"

// FuzzParseJSONConfig: a config is refused with a *ConfigError, and an accepted one has a path
// for every gauge and counter and valid names for everything it can write.
func FuzzParseJSONConfig(f *testing.F) {
	for _, s := range []string{fuzzConfig, fuzzObjectConfig, jsonConfig, "metrics:\n- name: a\n", "metrics:\n- name: a\n  path: '{.a}{.b}'\n",
		"metrics:\n- name: a\n  path: $.a\n  labels: {l: 'x{$[\"a}b\"]}-{.c}'}\n"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, y string) {
		c, err := scrape.ParseJSONConfig([]byte(y))
		if err != nil {
			var ce *scrape.ConfigError
			if !errors.As(err, &ce) {
				t.Fatalf("ParseJSONConfig error %v is not a *ConfigError", err)
			}
			return
		}
		for i, m := range c.Metrics {
			if m.Type != "object" && strings.TrimSpace(m.Path) == "" {
				t.Errorf("metrics[%d] (%s) accepted without a path", i, m.Type)
			}
			names := []string{m.Name}
			if m.Type == "object" {
				names = names[:0]
				for k := range m.Values {
					names = append(names, m.Name+"_"+k)
				}
			}
			for _, n := range names {
				if s := scrape.Clean([]scrape.Sample{{Name: n}}); len(s) != 1 {
					t.Errorf("metrics[%d] writes %q, which cannot be exposed", i, n)
				}
			}
		}
	})
}

// FuzzExtract: what an accepted config extracts from any document is exposed with nothing
// dropped but repeated series: names valid, types and label names agreeing across entries.
func FuzzExtract(f *testing.F) {
	f.Add(fuzzConfig, `{"x":1,"y":"z"}`)
	f.Add(fuzzObjectConfig, `{"q":[{"n":"a","d":1},{"n":"b","d":"2"}]}`)
	f.Add(jsonConfig, doc)
	f.Add("metrics:\n- name: a\n  path: $.a\n  labels: {k: x}\n- name: a\n  path: $.b\n  labels: {j: y}\n", `{"a":1,"b":2}`)
	f.Fuzz(func(t *testing.T, y, d string) {
		c, err := scrape.ParseJSONConfig([]byte(y))
		if err != nil {
			return
		}
		v, err := scrape.DecodeJSON([]byte(d))
		if err != nil {
			return
		}
		samples := c.Extract(v)
		reg := prometheus.NewRegistry()
		e, err := scrape.New(staticProbe(samples), scrape.WithTarget("x"), scrape.WithRegisterer(reg))
		if err != nil {
			t.Fatal(err)
		}
		got := scrapeHandler(t, e.Handler())
		if got["probe_success"] != 1 {
			t.Errorf("probe_success %v", got["probe_success"])
		}
		own, _ := adaptertest.Values(reg)
		for k, n := range own {
			if strings.HasPrefix(k, "podblocks_adapter_scrape_dropped_samples_total") && !strings.Contains(k, `"duplicate"`) && n > 0 {
				t.Errorf("%s = %v for samples %+v", k, n, samples)
			}
		}
	})
}
