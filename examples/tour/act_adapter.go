package main

import (
	"bytes"
	"context"
	"fmt"
	"strings"
	"time"

	"github.com/podblocks/podblocks/adapter/health"
	"github.com/podblocks/podblocks/adapter/logs"
	"github.com/podblocks/podblocks/adapter/statsd"
	"github.com/podblocks/podblocks/adaptertest"
	"github.com/podblocks/podblocks/lifecycle"
)

// adapterAct normalizes the outside view of an "application" three ways: its statsd metrics
// become Prometheus metrics (through statsd_exporter's mapping config, over a real UDP socket,
// with a type conflict that does not break anything), its access log becomes zap JSON, and a TCP
// check becomes a readiness probe.
func adapterAct() act {
	return act{
		pattern: "adapter",
		pkg:     "adapter",
		run: func(ctx context.Context, s *stage) (string, error) {
			cfg, err := statsd.ParseMappingConfig([]byte(`
mappings:
- match: "shop.*.orders"
  name: "shop_orders_total"
  labels:
    region: "$1"
`))
			if err != nil {
				return "", err
			}
			exp, err := statsd.New(statsd.WithUDP("127.0.0.1:0"), statsd.WithMapping(cfg))
			if err != nil {
				return "", err
			}
			ctx, cancel := context.WithTimeout(ctx, 20*time.Second)
			defer cancel()
			done := make(chan error, 1)
			go func() { done <- exp.Run(ctx) }()
			defer func() { cancel(); <-done }()
			if err := awaitReady(ctx, "the statsd exporter", exp.Ready(), done); err != nil {
				return "", err
			}
			addr, err := exp.UDPAddr()
			if err != nil {
				return "", err
			}
			c, err := adaptertest.DialStatsD("udp", addr.String())
			if err != nil {
				return "", err
			}
			lines := []string{"shop.eu.orders:3|c|#channel:web", "shop.us.orders:2|c|#channel:app", "shop.eu.orders:1|c|#channel:web",
				"cart_size:4|g", "cart_size:1|c"}
			s.say("the app sends statsd over UDP to %s:", addr)
			for _, l := range lines {
				s.say("  %s", l)
			}
			err = c.Send(lines...)
			c.Close()
			if err != nil {
				return "", err
			}
			var vals map[string]float64
			conflicts := ""
			err = waitFor(ctx, "the statsd lines to be counted", 10*time.Millisecond, func() bool {
				vals, _ = adaptertest.Values(exp)
				_, _, rows := exp.Statusz()
				for _, r := range rows {
					if r[0] == "type conflicts" {
						conflicts = r[1]
					}
				}
				return vals[`shop_orders_total{channel="web",region="eu"}`] == 4 && vals["cart_size"] == 4 && conflicts == "1"
			})
			if err != nil {
				return "", fmt.Errorf("%w; counted: %v", err, vals)
			}
			s.say("Prometheus sees (mapped by statsd_exporter's YAML, read as-is):")
			s.say("  shop_orders_total{channel=\"web\",region=\"eu\"} %g", vals[`shop_orders_total{channel="web",region="eu"}`])
			s.say("  shop_orders_total{channel=\"app\",region=\"us\"} %g", vals[`shop_orders_total{channel="app",region="us"}`])
			s.say("  cart_size %g   (\"cart_size:1|c\" conflicts with the gauge: counted, dropped, /metrics still fine)", vals["cart_size"])

			var out bytes.Buffer
			n, err := logs.New(logs.CommonLog{Combined: true}, &out, logs.WithStatic("source", "nginx"))
			if err != nil {
				return "", err
			}
			access := `10.1.2.3 - - [02/Jan/2025:03:04:05 +0000] "POST /checkout HTTP/1.1" 502 17 "-" "Mozilla/5.0"`
			n.Line([]byte(access))
			s.say("its nginx access log line")
			s.say("  %s", access)
			s.say("becomes zap JSON (a 502 is logged at error level):")
			s.say("  %s", strings.TrimSpace(out.String()))

			// The command is the tour's own binary (see child.go): more than a shell to start, on a
			// busy machine more than the default 1s, so it gets 5s.
			a, err := health.New([]health.Spec{{Name: "app", Probe: lifecycle.Readyz, Timeout: 5 * time.Second,
				Checker: &health.Exec{Command: selfCommand("ok")}}})
			if err != nil {
				return "", err
			}
			herr := a.Check(ctx, "app")
			s.say("and a command check becomes a /readyz probe on the hook server: healthy=%v", herr == nil)
			if herr != nil {
				return "", fmt.Errorf("the command check: %w", herr)
			}

			keep, err := statsd.New(statsd.WithUDP("127.0.0.1:0"), statsd.WithMapping(cfg))
			if err != nil {
				return "", err
			}
			s.keep(keep, keep)
			return fmt.Sprintf("5 statsd lines -> %d series (%s type conflict counted), 1 log line -> JSON, 1 probe",
				len(vals), conflicts), nil
		},
	}
}
