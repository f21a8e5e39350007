package statsd_test

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"go.uber.org/zap"
	"go.uber.org/zap/zaptest/observer"

	"github.com/podblocks/podblocks/adapter/statsd"
	"github.com/podblocks/podblocks/adaptertest"
	"github.com/podblocks/podblocks/lifecycletest"
)

// start runs an Exporter on loopback listeners and stops it when the test ends.
func start(t *testing.T, opts ...statsd.Option) *statsd.Exporter {
	t.Helper()
	e, err := statsd.New(opts...)
	if err != nil {
		t.Fatal(err)
	}
	lifecycletest.StartReady(t, e, 30*time.Second)
	return e
}

func values(t *testing.T, g prometheus.Gatherer) map[string]float64 {
	t.Helper()
	v, err := adaptertest.Values(g)
	if err != nil {
		t.Fatalf("gather: %v", err)
	}
	return v
}

// waitFor polls until every key in want has its value.
func waitFor(t *testing.T, g prometheus.Gatherer, want map[string]float64) {
	t.Helper()
	var got map[string]float64
	ok := func() bool {
		got = values(t, g)
		for k, v := range want {
			if got[k] != v {
				return false
			}
		}
		return true
	}
	deadline := time.Now().Add(30 * time.Second)
	for !ok() {
		if time.Now().After(deadline) {
			sub := map[string]float64{}
			for k := range want {
				if v, present := got[k]; present {
					sub[k] = v
				}
			}
			t.Fatalf("metrics (-want +got):\n%s", cmp.Diff(want, sub))
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func TestExporterListeners(t *testing.T) {
	sock := filepath.Join(t.TempDir(), "statsd.sock")
	e := start(t, statsd.WithUDP("127.0.0.1:0"), statsd.WithTCP("127.0.0.1:0"), statsd.WithUnixgram(sock, 0))
	udp, err := e.UDPAddr()
	if err != nil {
		t.Fatal(err)
	}
	tcp, err := e.TCPAddr()
	if err != nil {
		t.Fatal(err)
	}
	for _, l := range []struct{ network, addr, name string }{
		{"udp", udp.String(), "via_udp"}, {"tcp", tcp.String(), "via_tcp"}, {"unixgram", sock, "via_unixgram"},
	} {
		c, err := adaptertest.DialStatsD(l.network, l.addr)
		if err != nil {
			t.Fatal(err)
		}
		if err := c.Send(l.name+":1|c", l.name+":2|c|#t:x", "garbage"); err != nil {
			t.Fatal(err)
		}
		c.Close()
	}
	waitFor(t, e, map[string]float64{
		"via_udp": 1, `via_udp{t="x"}`: 2,
		"via_tcp": 1, `via_tcp{t="x"}`: 2,
		"via_unixgram": 1, `via_unixgram{t="x"}`: 2,
	})
}

func TestExporterSemantics(t *testing.T) {
	cfg, err := statsd.ParseMappingConfig([]byte(`
defaults:
  observer_type: summary
mappings:
- match: "api.*.latency"
  name: "api_latency_seconds"
  observer_type: histogram
  histogram_options:
    buckets: [0.1, 1]
  labels:
    endpoint: "$1"
- match: "api.*.hits"
  name: "api_hits_total"
  honor_labels: true
  labels:
    endpoint: "$1"
    env: "prod"
- match: "scaled.*"
  name: "scaled"
  scale: 0.001
- match: "drop.*"
  name: "x"
  action: drop
`))
	if err != nil {
		t.Fatal(err)
	}
	reg := prometheus.NewRegistry()
	e, err := statsd.New(statsd.WithMapping(cfg), statsd.WithRegisterer(reg))
	if err != nil {
		t.Fatal(err)
	}
	e.Handle([]byte(strings.Join([]string{
		"api.users.latency:50|ms",       // 0.05s
		"api.users.latency:500|ms|@0.5", // 0.5s, observed twice
		"api.users.latency:2|h",         // 2s
		"api.users.hits:1|c|#env:dev",   // honor_labels keeps env=dev
		"api.users.hits:3|c|@0.5",       // 6
		"gauge:10|g", "gauge:+5|g", "gauge:-3|g",
		"users:alice|s", "users:bob|s", "users:alice|s",
		"scaled.x:2000|g",
		"drop.me:1|c",
		"neg:-1|c",
		"t:1|ms",
		"t:1|c", // conflicts with the summary t
	}, "\n")))
	want := map[string]float64{
		`api_latency_seconds_bucket{endpoint="users",le="0.1"}`:  1,
		`api_latency_seconds_bucket{endpoint="users",le="1"}`:    3,
		`api_latency_seconds_bucket{endpoint="users",le="+Inf"}`: 4,
		`api_latency_seconds_count{endpoint="users"}`:            4,
		`api_latency_seconds_sum{endpoint="users"}`:              3.05,
		`api_hits_total{endpoint="users",env="dev"}`:             1,
		`api_hits_total{endpoint="users",env="prod"}`:            6,
		"gauge":             12,
		"users":             2,
		"scaled":            2,
		"t_count":           1,
		"t_sum":             0.001,
		`t{quantile="0.5"}`: 0.001,
	}
	got := values(t, e)
	for k, v := range want {
		if g, ok := got[k]; !ok || fmt.Sprintf("%.6g", g) != fmt.Sprintf("%.6g", v) {
			t.Errorf("%s = %v (present %v), want %v", k, g, ok, v)
		}
	}
	for _, k := range []string{"x", "drop_me", "neg"} {
		if _, ok := got[k]; ok {
			t.Errorf("%s is exposed, want it dropped", k)
		}
	}
	own := values(t, reg)
	for k, v := range map[string]float64{
		"podblocks_adapter_statsd_conflicts_total":                                        1,
		"podblocks_adapter_statsd_mapping_drops_total":                                    1,
		`podblocks_adapter_statsd_sample_errors_total{reason="illegal_negative_counter"}`: 1,
		"podblocks_adapter_statsd_lines_total":                                            16,
	} {
		if own[k] != v {
			t.Errorf("%s = %v, want %v", k, own[k], v)
		}
	}
}

// TestConflictsNeverBreakMetrics sends every kind of conflict statsd_exporter chokes on and checks
// that a real /metrics handler keeps answering 200 with every valid metric.
func TestConflictsNeverBreakMetrics(t *testing.T) {
	reg := prometheus.NewRegistry()
	e, err := statsd.New(statsd.WithRegisterer(reg))
	if err != nil {
		t.Fatal(err)
	}
	h := promhttp.HandlerFor(prometheus.Gatherers{reg, e}, promhttp.HandlerOpts{ErrorHandling: promhttp.ContinueOnError})
	srv := httptest.NewServer(h)
	defer srv.Close()
	e.Handle([]byte(strings.Join([]string{
		"x:1|c", "x:1|g", // type conflict
		"y:1|ms", "y_count:1|c", "y_sum:1|g", // summary suffixes
		"z_count:1|c", "z:1|h", // a summary after its _count name exists as a counter
		"l:1|c|#a:1", "l:1|c|#b:2", // different label names in one family: fine
		"q:1|ms|#quantile:x",                       // reserved label dropped
		"dup:1|c|#a-b:1,a_b:2",                     // two tags escaping to one label: the last wins
		"__meta:1|c|#__x:1",                        // reserved label prefix dropped, name kept
		"podblocks_adapter_statsd_lines_total:5|g", // collides with the adapter's own metric
		"bad\xffutf8:1|c",
		strings.Repeat("a", 70000) + ":1|c",
	}, "\n")))
	got, err := adaptertest.Scrape(srv.URL)
	if err != nil {
		t.Fatalf("scrape failed: %v", err)
	}
	for k, v := range map[string]float64{
		"x": 1, "y_count": 1, "z_count": 1, `l{a="1"}`: 1, `l{b="2"}`: 1, `q_count`: 1, `dup{a_b="2"}`: 1,
		"__meta": 1,
	} {
		if got[k] != v {
			t.Errorf("%s = %v, want %v", k, got[k], v)
		}
	}
	if got["podblocks_adapter_statsd_conflicts_total"] != 5 {
		t.Errorf("conflicts = %v, want 5 (x, y_count, y_sum, z, podblocks_adapter_statsd_lines_total)",
			got["podblocks_adapter_statsd_conflicts_total"])
	}
}

func TestTCPLongLineAndIdle(t *testing.T) {
	reg := prometheus.NewRegistry()
	e := start(t, statsd.WithTCP("127.0.0.1:0"), statsd.WithMaxLineLength(64),
		statsd.WithTCPIdleTimeout(2*time.Second), statsd.WithRegisterer(reg))
	addr, _ := e.TCPAddr()
	c, err := net.Dial("tcp", addr.String())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	fmt.Fprintf(c, "%s:1|c\nafter:1|c\n", strings.Repeat("long", 40))
	waitFor(t, e, map[string]float64{"after": 1})
	waitFor(t, reg, map[string]float64{`podblocks_adapter_statsd_sample_errors_total{reason="line_too_long"}`: 1})
	// The idle timeout closes the connection: a read sees EOF.
	c.SetReadDeadline(time.Now().Add(30 * time.Second))
	if _, err := c.Read(make([]byte, 1)); err == nil {
		t.Error("read on an idle connection succeeded, want it closed")
	}
}

func TestTTLExpiry(t *testing.T) {
	cfg, err := statsd.ParseMappingConfig([]byte("mappings:\n- match: short.*\n  name: short\n  ttl: 2s\n  labels: {k: $1}\n"))
	if err != nil {
		t.Fatal(err)
	}
	e := start(t, statsd.WithMapping(cfg), statsd.WithSweepInterval(50*time.Millisecond))
	e.Handle([]byte("short.a:1|c\nlong:1|c"))
	waitFor(t, e, map[string]float64{`short{k="a"}`: 1, "long": 1})
	adaptertest.Eventually(t, 30*time.Second, func() bool {
		_, present := values(t, e)[`short{k="a"}`]
		return !present
	}, "short{k=a} expired")
	if values(t, e)["long"] != 1 {
		t.Error("series without ttl expired")
	}
	e.Handle([]byte("short.a:1|c"))
	waitFor(t, e, map[string]float64{`short{k="a"}`: 1})
}

// TestConcurrentNoLoss sends from several goroutines over UDP in bounded bursts and checks that
// every line is counted (the socket buffer is large enough for the total).
func TestConcurrentNoLoss(t *testing.T) {
	e := start(t, statsd.WithUDP("127.0.0.1:0"), statsd.WithReaders(2))
	addr, _ := e.UDPAddr()
	const senders, packets = 4, 500
	var wg sync.WaitGroup
	errs := make(chan error, senders)
	for s := range senders {
		wg.Go(func() {
			c, err := adaptertest.DialStatsD("udp", addr.String())
			if err != nil {
				errs <- err
				return
			}
			defer c.Close()
			for i := range packets {
				lines := make([]string, 10)
				for j := range lines {
					lines[j] = fmt.Sprintf("load.s%d:1|c|#j:%d", s, (i+j)%5)
				}
				if err := c.Send(lines...); err != nil {
					errs <- err
					return
				}
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	adaptertest.Eventually(t, 60*time.Second, func() bool {
		return adaptertest.Sum(values(t, e), "load_s") == senders*packets*10
	}, "every line counted")
}

func TestSetMappingReload(t *testing.T) {
	e, err := statsd.New()
	if err != nil {
		t.Fatal(err)
	}
	e.Handle([]byte("a.b:1|c"))
	cfg, err := statsd.ParseMappingConfig([]byte("mappings:\n- match: a.*\n  name: mapped\n"))
	if err != nil {
		t.Fatal(err)
	}
	e.SetMapping(cfg)
	e.Handle([]byte("a.b:1|c"))
	got := values(t, e)
	if got["a_b"] != 1 || got["mapped"] != 1 {
		t.Errorf("a_b = %v, mapped = %v, want 1 and 1", got["a_b"], got["mapped"])
	}
}

func TestRunErrors(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	e, err := statsd.New(statsd.WithUDP("127.0.0.1:0"), statsd.WithTCP(ln.Addr().String()))
	if err != nil {
		t.Fatal(err)
	}
	if err := e.Run(context.Background()); err == nil {
		t.Error("Run on a busy TCP port succeeded")
	}
	e3, err := statsd.New(statsd.WithUDP("127.0.0.1:0"), statsd.WithUnixgram(filepath.Join(t.TempDir(), "no", "such", "dir"), 0))
	if err != nil {
		t.Fatal(err)
	}
	if err := e3.Run(context.Background()); err == nil {
		t.Error("Run with an impossible unixgram path succeeded")
	}
	if _, err := statsd.New(statsd.WithReaders(-1)); err == nil {
		t.Error("New with -1 readers succeeded")
	}
	e2, _ := statsd.New()
	if _, err := e2.UDPAddr(); !errors.Is(err, statsd.ErrNoListener) {
		t.Errorf("UDPAddr before Run = %v, want ErrNoListener", err)
	}
}

func TestStatusz(t *testing.T) {
	e := start(t, statsd.WithUDP("127.0.0.1:0"))
	e.Handle([]byte("a:1|c\nbad"))
	title, header, rows := e.Statusz()
	if title == "" || !cmp.Equal(header, []string{"key", "value"}) {
		t.Errorf("Statusz title %q header %v", title, header)
	}
	m := map[string]string{}
	for _, r := range rows {
		m[r[0]] = r[1]
	}
	if m["lines"] != "2" || m["errors"] != "1" || m["series"] != "1" || m["udp"] == "" {
		t.Errorf("Statusz rows = %v", m)
	}
}

var _ = http.StatusOK

// TestEmptyLabelIsNoLabel: a label whose value is empty (a regex capture that matched nothing, or
// a tag without a value) is dropped, as Prometheus does: x{k=""} is the series x, not a duplicate.
func TestEmptyLabelIsNoLabel(t *testing.T) {
	cfg, err := statsd.ParseMappingConfig([]byte(`mappings:
- match: '^req\.([a-z]*)\.count$'
  match_type: regex
  name: req_total
  labels: {route: "$1"}
`))
	if err != nil {
		t.Fatal(err)
	}
	e, err := statsd.New(statsd.WithMapping(cfg))
	if err != nil {
		t.Fatal(err)
	}
	e.Handle([]byte("req..count:1|c\nreq.home.count:2|c\nx:1|c|#k:\nx:2|c"))
	got := values(t, e)
	want := map[string]float64{"req_total": 1, `req_total{route="home"}`: 2, "x": 3}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("series (-want +got):\n%s", diff)
	}
}

// TestTinySampleRate: a sample rate below MinSampleRate (whose inverse overflows an int) is an
// invalid sample rate, counted; the sample is not applied.
func TestTinySampleRate(t *testing.T) {
	reg := prometheus.NewRegistry()
	e, err := statsd.New(statsd.WithRegisterer(reg))
	if err != nil {
		t.Fatal(err)
	}
	e.Handle([]byte("t:1|ms|@1e-30\nc:1|c|@1e-300\nok:1|c|@0.25\nsmall:1|ms|@1e-18"))
	if got := values(t, e); got["c"] != 0 || got["ok"] != 4 || got["small_count"] != 10_000 {
		t.Errorf("series %v, want no t or c, ok = 4, small_count = 10000 (the repeat cap)", got)
	}
	if v := values(t, reg)[`podblocks_adapter_statsd_sample_errors_total{reason="invalid_sample_factor"}`]; v != 2 {
		t.Errorf("invalid_sample_rate errors = %v, want 2", v)
	}
	if _, ok := values(t, e)["t_count"]; ok {
		t.Error("t_count exists: the sample with the tiny rate was applied")
	}
}

// TestConflictsLoggedRateLimited: conflicts are logged at warn level, at most once a second.
func TestConflictsLoggedRateLimited(t *testing.T) {
	core, logs := observer.New(zap.WarnLevel)
	e, err := statsd.New(statsd.WithLogger(zap.New(core)))
	if err != nil {
		t.Fatal(err)
	}
	e.Handle([]byte("x:1|c\nx:1|g\ny:1|c\ny:1|ms\nz:1|c\nz:1|s"))
	if got := logs.FilterMessageSnippet("conflict").Len(); got != 1 {
		t.Errorf("%d conflict logs at warn level for 3 conflicts within a second, want 1: %v", got, logs.All())
	}
}
