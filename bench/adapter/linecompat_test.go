package main

import (
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/statsd_exporter/pkg/event"
	"github.com/prometheus/statsd_exporter/pkg/line"

	"github.com/podblocks/podblocks/adapter/statsd"
)

// events renders what a line becomes, as comparable strings: "type name value labels".
func theirEvents(l string) []string {
	p := line.NewParser()
	p.EnableDogstatsdParsing()
	p.EnableInfluxdbParsing()
	p.EnableLibratoParsing()
	p.EnableSignalFXParsing()
	c := prometheus.NewCounter(prometheus.CounterOpts{Name: "x", Help: "x"})
	v := prometheus.NewCounterVec(prometheus.CounterOpts{Name: "y", Help: "y"}, []string{"reason"})
	var out []string
	for _, e := range p.LineToEvents(l, *v, c, c, c, slog.New(slog.DiscardHandler)) {
		if e.MetricName() == "" {
			continue // deliberate difference: podblocks rejects a line whose name is empty
		}
		out = append(out, render(string(e.MetricType()), e.MetricName(), e.Value(), e.Labels(), isRelative(e)))
	}
	return out
}

func isRelative(e event.Event) bool {
	g, ok := e.(*event.GaugeEvent)
	return ok && g.GRelative
}

func ourEvents(l string) []string {
	p := statsd.Parser{Formats: statsd.AllTagFormats}
	samples, _ := p.Parse([]byte(l))
	var out []string
	for _, s := range samples {
		labels := map[string]string{}
		for _, t := range s.Tags {
			labels[statsd.EscapeName(string(t.Key))] = string(t.Value)
		}
		v, n, typ := s.Value, 1, "observer"
		switch s.Type {
		case statsd.Counter:
			v, typ = v/s.SampleRate, "counter"
		case statsd.Gauge:
			typ = "gauge"
		case statsd.Set:
			continue // statsd_exporter has no sets
		case statsd.Timer:
			v /= 1000
		}
		if typ == "observer" && s.SampleRate != 1 {
			n = int(1 / s.SampleRate)
		}
		for range n {
			out = append(out, render(typ, string(s.Name), v, labels, s.Relative))
		}
	}
	return out
}

func render(typ, name string, v float64, labels map[string]string, rel bool) string {
	var ls []string
	for k, val := range labels {
		ls = append(ls, k+"="+val)
	}
	slices.Sort(ls)
	return fmt.Sprintf("%s %q %v rel=%v {%s}", typ, name, v, rel, strings.Join(ls, ","))
}

var lineSeeds = []string{
	"foo.bar:1|c", "foo:2.5|c|@0.1", "g:-0.5|g", "g:+3|g", "t:320|ms|@0.5", "h:0.25|h", "d:7|d",
	"m:1|c:2|g", "x:1:2:3|ms|#a:b", "req:1|c|#code:200,route:/a:b", "req:1|c|#a:b|c:abc123|T1656581400",
	"req:1|c|#a,b:c", "req,code=200,route=x:1|c", "req#code=200:1|c", "req.[code=200,x=y]count:1|c",
	"req[code=200]:1|c", "req,a=b:1|c|#c:d", "foo", "foo:1", "foo:abc|c", "foo:1|x", "foo:1|c|",
	"foo:1|c|zzz", "foo:1:2|c", "m:1|c:x|g", "a-b.c:1|c|#k-1:v",
}

// TestLineParserMatchesStatsdExporter compares the events both parsers make of the same lines.
func TestLineParserMatchesStatsdExporter(t *testing.T) {
	for _, l := range lineSeeds {
		compareLine(t, l)
	}
}

func FuzzLineParserMatchesStatsdExporter(f *testing.F) {
	for _, l := range lineSeeds {
		f.Add(l)
	}
	f.Fuzz(func(t *testing.T, l string) {
		compareLine(t, l)
	})
}

func compareLine(t *testing.T, l string) {
	t.Helper()
	if !utf8.ValidString(l) || strings.Contains(l, "\n") {
		return
	}
	p := statsd.Parser{Formats: statsd.AllTagFormats}
	if samples, err := p.Parse([]byte(l)); err == statsd.ErrInvalidSampleRate && len(samples) == 0 {
		return // deliberate difference: a negative or non-finite sample rate rejects the sample
	}
	want, got := theirEvents(l), ourEvents(l)
	if !slices.Equal(want, got) {
		t.Errorf("line %q:\n statsd_exporter %q\n podblocks       %q", l, want, got)
	}
}
