package scrape_test

import (
	"errors"
	"fmt"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/podblocks/podblocks/adapter/scrape"
)

func TestPathBracesAndQuotes(t *testing.T) {
	for _, bad := range []string{"{.a}{.b}", "$.a}", "$.a{", "{.a}}", "$['a'", "$['a']]", "$['a]", `$["a']`, "{.a} x"} {
		if p, err := scrape.CompilePath(bad); !errors.Is(err, scrape.ErrBadPath) {
			t.Errorf("CompilePath(%q) = %v, error %v, want ErrBadPath", bad, p, err)
		}
	}
	d, err := scrape.DecodeJSON([]byte(`{"a]b":1,"a}{":2,"x'y":3,"[":4,"a":{"b":5}}`))
	if err != nil {
		t.Fatal(err)
	}
	for path, want := range map[string]string{
		"$['a]b']":      "1",
		`$["x'y"]`:      "3",
		"$['[']":        "4",
		"{$['a]b']}":    "1",
		"{.a['b']}":     "5",
		"$['a'].b":      "5",
		"{ .a.b }":      "5",
		`$["a}{"]`:      "2",
		"$['a'][\"b\"]": "5",
	} {
		p, err := scrape.CompilePath(path)
		if err != nil {
			t.Errorf("CompilePath(%q): %v", path, err)
			continue
		}
		var got []string
		for _, v := range p.Eval(d) {
			got = append(got, fmt.Sprint(v))
		}
		if diff := cmp.Diff([]string{want}, got); diff != "" {
			t.Errorf("Eval(%q) (-want +got):\n%s", path, diff)
		}
	}
}

// TestLabelQuotedBrace: a label's {path} ends at its closing brace, not at a brace in a quoted name.
func TestLabelQuotedBrace(t *testing.T) {
	c, err := scrape.ParseJSONConfig([]byte("metrics:\n- name: app_x\n  path: '{.v}'\n  labels: {l: 'x-{$[\"a}b\"]}-y}'}\n"))
	if err != nil {
		t.Fatal(err)
	}
	d, _ := scrape.DecodeJSON([]byte(`{"v":1,"a}b":"z"}`))
	got := c.Extract(d)
	if len(got) != 1 || len(got[0].Labels) != 1 || got[0].Labels[0].Value != "x-z-y}" {
		t.Errorf("Extract = %+v, want one sample with l=\"x-z-y}\"", got)
	}
}

func TestJSONConfigNeedsPath(t *testing.T) {
	for _, y := range []string{"metrics:\n- name: app_x\n", "metrics:\n- name: app_x\n  type: counter\n  path: ''\n"} {
		_, err := scrape.ParseJSONConfig([]byte(y))
		var ce *scrape.ConfigError
		if !errors.As(err, &ce) || ce.Field != "metrics[0].path" {
			t.Errorf("config %q: error %v, want a ConfigError on metrics[0].path", y, err)
		}
	}
	for _, y := range []string{
		"metrics:\n- name: app_x\n  path: '{.a}{.b}'\n",
		"metrics:\n- name: app_x\n  path: '{.a}'\n  labels: {l: 'x{.a{}'}\n",
	} {
		if _, err := scrape.ParseJSONConfig([]byte(y)); !errors.Is(err, scrape.ErrBadPath) {
			t.Errorf("config %q: error %v, want ErrBadPath", y, err)
		}
	}
}

// TestJSONConfigLabelNamesAgree: two entries of one name with other label names are refused, as
// one of them would be dropped from every scrape.
func TestJSONConfigLabelNamesAgree(t *testing.T) {
	_, err := scrape.ParseJSONConfig([]byte("metrics:\n- name: a\n  path: $.a\n  labels: {k: x}\n- name: a\n  path: $.b\n  labels: {j: y}\n"))
	var ce *scrape.ConfigError
	if !errors.As(err, &ce) || ce.Field != "metrics[1].name" {
		t.Errorf("error %v, want a ConfigError on metrics[1].name", err)
	}
}
