package statsd

import (
	"fmt"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
)

// benchPacket is a 10-line packet like the UDP benchmark's: counters with DogStatsD tags that a
// glob mapping turns into labels.
func benchPacket() []byte {
	var b strings.Builder
	for i := range 10 {
		fmt.Fprintf(&b, "bench.svc%d.requests:1|c|#code:200,route:r%d\n", i%3, i)
	}
	return []byte(b.String())
}

const benchMapping = `
mappings:
- match: "bench.*.requests"
  name: "bench_requests_total"
  labels:
    service: "$1"
- match: "bench.*.latency"
  name: "bench_latency_seconds"
  observer_type: histogram
  labels:
    service: "$1"
`

// BenchmarkHandle measures the per-packet hot path (parse, cached mapping, counter update) of
// podblocks; BenchmarkBaselineCounterVec is the same work done the obvious way with
// client_golang's CounterVec and a label map per line, as a baseline in the same run.
func BenchmarkHandle(b *testing.B) {
	cfg, err := ParseMappingConfig([]byte(benchMapping))
	if err != nil {
		b.Fatal(err)
	}
	e, err := New(WithMapping(cfg))
	if err != nil {
		b.Fatal(err)
	}
	pkt := benchPacket()
	w := newWorker(e)
	b.ReportAllocs()
	b.SetBytes(int64(len(pkt)))
	for b.Loop() {
		w.begin(0)
		w.handle(pkt)
		w.flush()
	}
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*10), "ns/line")
}

func BenchmarkHandleParallel(b *testing.B) {
	cfg, err := ParseMappingConfig([]byte(benchMapping))
	if err != nil {
		b.Fatal(err)
	}
	e, err := New(WithMapping(cfg))
	if err != nil {
		b.Fatal(err)
	}
	pkt := benchPacket()
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		w := newWorker(e)
		for pb.Next() {
			w.begin(0)
			w.handle(pkt)
			w.flush()
		}
	})
}

func BenchmarkBaselineCounterVec(b *testing.B) {
	vec := prometheus.NewCounterVec(prometheus.CounterOpts{Name: "bench_requests_total", Help: "h"},
		[]string{"code", "route", "service"})
	lines := strings.Split(strings.TrimSpace(string(benchPacket())), "\n")
	b.ReportAllocs()
	for b.Loop() {
		for _, l := range lines {
			name, rest, _ := strings.Cut(l, ":")
			_, tags, _ := strings.Cut(rest, "|#")
			labels := prometheus.Labels{}
			for _, t := range strings.Split(tags, ",") {
				k, v, _ := strings.Cut(t, ":")
				labels[k] = v
			}
			labels["service"] = strings.Split(name, ".")[1]
			vec.With(labels).Inc()
		}
	}
}
