package twemproxy_test

import (
	"fmt"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"

	"github.com/podblocks/podblocks/ambassador/redis"
	"github.com/podblocks/podblocks/ambassador/twemproxy"
	"github.com/podblocks/podblocks/ambassador/twemproxy/twemproxytest"
	"github.com/podblocks/podblocks/internal/await"
)

// responseHistogram returns the podblocks_sharding_server_response_seconds histogram of server, or
// nil.
func responseHistogram(t *testing.T, reg *prometheus.Registry, server string) *dto.Histogram {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != "podblocks_sharding_server_response_seconds" {
			continue
		}
		for _, m := range mf.GetMetric() {
			for _, l := range m.GetLabel() {
				if l.GetName() == "server" && l.GetValue() == server {
					return m.GetHistogram()
				}
			}
		}
	}
	return nil
}

// bucketAt returns the cumulative count of h's bucket whose upper bound is le.
func bucketAt(t *testing.T, h *dto.Histogram, le float64) uint64 {
	t.Helper()
	for _, b := range h.GetBucket() {
		if b.GetUpperBound() == le {
			return b.GetCumulativeCount()
		}
	}
	t.Fatalf("no bucket le=%v in %v", le, h)
	return 0
}

// Each reply read from a server is observed in podblocks_sharding_server_response_seconds of its
// pool and server: a server that takes a second has every reply in the buckets past 1s, a fast one
// has none there; a reload that keeps the servers keeps the counts. The proxy used to export no
// response time at all.
func TestServerResponseSeconds(t *testing.T) {
	const delay = time.Second
	slow := startFakeRedis(t, func(conn, n int, args []string) string {
		time.Sleep(delay)
		return echoLen(conn, n, args)
	})
	fast := startFakeRedis(t, echoLen)
	reg := prometheus.NewRegistry()
	addr, srv, pc := twemproxytest.StartPool(t, "r", true, "", []string{slow.addr(), fast.addr()},
		twemproxy.Protocols{Redis: &redis.Protocol{}}, twemproxy.WithRegisterer(reg))
	name := map[string]string{}
	for _, s := range pc.Servers {
		name[s.Addr] = s.Name
	}
	keySlow, keyFast := keysOn(t, pc, slow.addr(), fast.addr())
	c := dialResp(t, addr)
	const nslow, nfast = 3, 20
	for range nslow {
		if got := c.do(t, "GET", keySlow); got != "$v-"+keySlow {
			t.Fatalf("GET %s = %q", keySlow, got)
		}
	}
	for range nfast {
		if got := c.do(t, "GET", keyFast); got != "$v-"+keyFast {
			t.Fatalf("GET %s = %q", keyFast, got)
		}
	}
	for _, s := range []struct {
		addr string
		n    uint64
	}{{slow.addr(), nslow}, {fast.addr(), nfast}} {
		await.True(t, fmt.Sprintf("%d responses of %s observed", s.n, s.addr), 10*time.Second, func() bool {
			h := responseHistogram(t, reg, name[s.addr])
			return h != nil && h.GetSampleCount() == s.n
		})
	}
	hs, hf := responseHistogram(t, reg, name[slow.addr()]), responseHistogram(t, reg, name[fast.addr()])
	if got := bucketAt(t, hs, 1); got != 0 {
		t.Errorf("slow server: %d replies within 1s, want none (each took %v)", got, delay)
	}
	if got, want := hs.GetSampleSum(), nslow*delay.Seconds(); got < want {
		t.Errorf("slow server: sum %vs, want at least %vs", got, want)
	}
	if got := bucketAt(t, hf, 1); got != nfast {
		t.Errorf("fast server: %d replies within 1s, want all %d", got, nfast)
	}
	if got := hf.GetSampleSum(); got <= 0 || got >= nfast*delay.Seconds() {
		t.Errorf("fast server: sum %vs, want more than 0 and less than %vs", got, nfast*delay.Seconds())
	}

	// A reload that keeps the servers keeps their histograms, as their other counters.
	cfg := *srv.Config()
	pool := *cfg.Pools[0]
	pool.Timeout = 5 * time.Second
	cfg.Pools = []*twemproxy.PoolConfig{&pool}
	if err := srv.Reload(&cfg); err != nil {
		t.Fatal(err)
	}
	if h := responseHistogram(t, reg, name[slow.addr()]); h.GetSampleCount() != nslow || h.GetSampleSum() != hs.GetSampleSum() {
		t.Errorf("slow server after a reload: count %d sum %v, want %d and %v", h.GetSampleCount(), h.GetSampleSum(), nslow, hs.GetSampleSum())
	}
}
