package twemproxy_test

import (
	"fmt"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/podblocks/podblocks/ambassador/twemproxy"
	"github.com/podblocks/podblocks/internal/freeport"
	"github.com/podblocks/podblocks/lifecycletest"
)

// serverSeries returns the value of the counter name, or the sample count of the histogram name,
// for server in pool, as reg gathers it; -1 if there is none.
func serverSeries(t *testing.T, reg *prometheus.Registry, name, pool, server string) float64 {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
		for _, m := range mf.GetMetric() {
			labels := map[string]string{}
			for _, l := range m.GetLabel() {
				labels[l.GetName()] = l.GetValue()
			}
			if labels["pool"] != pool || labels["server"] != server {
				continue
			}
			if h := m.GetHistogram(); h != nil {
				return float64(h.GetSampleCount())
			}
			return m.GetCounter().GetValue()
		}
	}
	return -1
}

// A reload that moves a server to another address under the same name starts a fresh server (not
// ejected, new connections), but its counters, which the stats document and the Prometheus series
// report by the name alone, go on from the old address's: a Prometheus counter of an unchanged
// label set never goes back within the process. The old code started them at 0 again.
func TestReloadMovedServerCountersGoOn(t *testing.T) {
	v := func(conn, n int, args []string) string { return bulk("v") }
	old, moved, other := startFakeRedis(t, v), startFakeRedis(t, v), startFakeRedis(t, v)
	listen := freeport.TCP(t)
	yml := func(a string) string {
		return fmt.Sprintf("r:\n  listen: %s\n  redis: true\n  servers:\n   - %s:1 a\n   - %s:1 b\n", listen, a, other.addr())
	}
	reg := prometheus.NewRegistry()
	cfg := parseConfig(t, yml(old.addr()))
	srv, err := twemproxy.NewServer(cfg, bothProtocols, twemproxy.WithRegisterer(reg))
	if err != nil {
		t.Fatal(err)
	}
	lifecycletest.StartReady(t, srv, 10*time.Second)
	key := keyOn(t, cfg.Pools[0], old.addr())
	c := dialResp(t, listen)
	for range 5 {
		if got := c.do(t, "GET", key); got != "$v" {
			t.Fatalf("GET %s: %s", key, got)
		}
	}
	series := []string{"podblocks_sharding_server_requests_total", "podblocks_sharding_server_request_bytes_total",
		"podblocks_sharding_server_responses_total", "podblocks_sharding_server_response_bytes_total",
		"podblocks_sharding_server_response_seconds"}
	before := map[string]float64{}
	for _, name := range series {
		if before[name] = serverSeries(t, reg, name, "r", "a"); before[name] <= 0 {
			t.Fatalf("%s{server=\"a\"} = %v after 5 requests, want more than 0", name, before[name])
		}
	}
	statsBefore := serverStats(t, srv, "r", "a")

	if err := srv.Reload(parseConfig(t, yml(moved.addr()))); err != nil {
		t.Fatal(err)
	}
	for _, name := range series {
		if got := serverSeries(t, reg, name, "r", "a"); got < before[name] {
			t.Errorf("%s{server=\"a\"} after the move: %v, before: %v; want no less", name, got, before[name])
		}
	}
	if got := serverStats(t, srv, "r", "a"); got.Requests < statsBefore.Requests || got.Responses < statsBefore.Responses ||
		got.Addr != moved.addr() || got.Ejected {
		t.Errorf("server a after the move to %s: %+v; before: %+v", moved.addr(), got, statsBefore)
	}
	if got := c.do(t, "GET", key); got != "$v" {
		t.Fatalf("GET %s after the move: %s", key, got)
	}
	if got, want := serverStats(t, srv, "r", "a").Requests, statsBefore.Requests+1; got != want {
		t.Errorf("server a's requests after one more: %d, want %d", got, want)
	}
}
