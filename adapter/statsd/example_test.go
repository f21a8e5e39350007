package statsd_test

import (
	"fmt"

	"github.com/podblocks/podblocks/adapter/statsd"
	"github.com/podblocks/podblocks/adaptertest"
)

// Map statsd names to labelled Prometheus metrics with statsd_exporter's mapping config.
func Example() {
	cfg, err := statsd.ParseMappingConfig([]byte(`
mappings:
- match: "app.*.requests"
  name: "app_requests_total"
  labels:
    service: "$1"
`))
	if err != nil {
		panic(err)
	}
	e, err := statsd.New(statsd.WithMapping(cfg), statsd.WithUDP(":9125"))
	if err != nil {
		panic(err)
	}
	// e.Run(ctx) would listen on :9125; Handle feeds lines directly.
	e.Handle([]byte("app.checkout.requests:1|c|#code:200\napp.checkout.requests:2|c|#code:200"))
	v, _ := adaptertest.Values(e)
	fmt.Println(v[`app_requests_total{code="200",service="checkout"}`])
	// Output: 3
}

func ExampleParser() {
	p := statsd.Parser{Formats: statsd.AllTagFormats}
	samples, err := p.Parse([]byte("latency,region=eu:320|ms|@0.5"))
	fmt.Println(err)
	for _, s := range samples {
		fmt.Println(string(s.Name), s.Type, s.Value, s.SampleRate, string(s.Tags[0].Key), string(s.Tags[0].Value))
	}
	// Output:
	// <nil>
	// latency ms 320 0.5 region eu
}
