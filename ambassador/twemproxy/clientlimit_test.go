package twemproxy_test

import (
	"io"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
	"go.uber.org/zap/zaptest/observer"

	"github.com/podblocks/podblocks/ambassador/redis"
	"github.com/podblocks/podblocks/ambassador/twemproxy"
	"github.com/podblocks/podblocks/ambassador/twemproxy/twemproxytest"
	"github.com/podblocks/podblocks/internal/await"
)

// A connection past client_connections is closed at once, as before, but no longer silently: it is
// counted (PoolStats.ClientRejected and podblocks_sharding_client_rejected_total, not client_err,
// which counts the errors of accepted clients as nutcracker's does) and logged, at most once a
// second. The old code closed it with no count and no log.
func TestClientConnectionsLimitCountedAndLogged(t *testing.T) {
	be := startFakeRedis(t, func(int, int, []string) string { return bulk("v") })
	core, logs := observer.New(zapcore.WarnLevel)
	reg := prometheus.NewPedanticRegistry()
	addr, srv, _ := twemproxytest.StartPool(t, "r", true, "  client_connections: 1\n", []string{be.addr()},
		twemproxy.Protocols{Redis: &redis.Protocol{}}, twemproxy.WithLogger(zap.New(core)), twemproxy.WithRegisterer(reg))
	first := dialResp(t, addr)
	if got := first.do(t, "GET", "k"); got != "$v" {
		t.Fatalf("GET k: %q", got)
	}
	start := time.Now()
	for range 3 {
		c, err := net.DialTimeout("tcp", addr, 5*time.Second)
		if err != nil {
			t.Fatal(err)
		}
		_ = c.SetDeadline(time.Now().Add(10 * time.Second))
		if n, err := c.Read(make([]byte, 1)); err != io.EOF {
			t.Errorf("connection past client_connections: read %d bytes, %v; want EOF", n, err)
		}
		c.Close()
	}
	await.True(t, "3 rejected connections counted", 10*time.Second, func() bool {
		return srv.Snapshot()[0].ClientRejected == 3
	})
	if ps := srv.Snapshot()[0]; ps.ClientErr != 0 || ps.ClientConnections != 1 {
		t.Errorf("client_err %d, client_connections %d; want 0 and 1", ps.ClientErr, ps.ClientConnections)
	}
	if got := metricValue(t, reg, "podblocks_sharding_client_rejected_total"); got != 3 {
		t.Errorf("podblocks_sharding_client_rejected_total = %v, want 3", got)
	}
	within := time.Since(start) < time.Second
	warns := logs.FilterMessage("client_connections reached: closing a new client connection").All()
	if len(warns) == 0 || within && len(warns) != 1 { // within a second, the other two are held back
		t.Fatalf("%d warnings of the limit (all 3 within a second: %v), want 1: %v", len(warns), within, logs.All())
	}
	if got := warns[0].ContextMap()["client_connections"]; got != int64(1) {
		t.Errorf("warning's client_connections = %v, want 1", got)
	}
	if got := first.do(t, "GET", "k"); got != "$v" {
		t.Errorf("the accepted client after the rejections: GET k: %q", got)
	}
}

// metricValue returns the value of the one sample of the metric name in reg.
func metricValue(t *testing.T, reg *prometheus.Registry, name string) float64 {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() == name && len(mf.GetMetric()) == 1 {
			m := mf.GetMetric()[0]
			if c := m.GetCounter(); c != nil {
				return c.GetValue()
			}
			return m.GetGauge().GetValue()
		}
	}
	t.Fatalf("no single sample of %s", name)
	return 0
}

// A client whose stream has ended, at a refused request or a QUIT, and that the proxy still reads
// (lingers on, up to 2 s, so that the client gets no reset) no longer holds a client_connections
// place: a client that connects once the first has read the end of its stream is served. So it
// is under nutcracker, which counts a client connection against its limit (of its descriptors;
// it ignores client_connections) until it closes it, at once after a QUIT or a refused request
// (measured: at its limit, a new client is served once one has quit). The old code counted a
// refused client while it lingered and closed the new one.
func TestLingeringClientHoldsNoPlace(t *testing.T) {
	be := startFakeRedis(t, func(int, int, []string) string { return bulk("v") })
	addr, srv, _ := twemproxytest.StartPool(t, "r", true, "  client_connections: 1\n", []string{be.addr()},
		twemproxy.Protocols{Redis: &redis.Protocol{}})
	for _, end := range []struct{ name, in, reply string }{
		{"refused", "SET k \"v\r\n", "-ERR Protocol error: unbalanced quotes in request\r\n"},
		{"quit", encodeCmd("QUIT"), "+OK\r\n"},
	} {
		first := dialResp(t, addr)
		if got := first.do(t, "GET", "k"); got != "$v" {
			t.Fatalf("GET k: %q", got)
		}
		// The client sends the request that ends its stream and more, reads to the end of the
		// stream, and keeps its side open: the proxy lingers on it.
		if _, err := io.WriteString(first.c, end.in+strings.Repeat("x", 1000)); err != nil {
			t.Fatal(err)
		}
		if got, err := io.ReadAll(first.r); string(got) != end.reply || err != nil {
			t.Fatalf("%s: read %q, %v; want %q and the end of the stream", end.name, got, err, end.reply)
		}
		next := dialResp(t, addr)
		_ = next.c.SetDeadline(time.Now().Add(10 * time.Second))
		if _, err := io.WriteString(next.c, encodeCmd("GET", "k")); err != nil {
			t.Fatal(err)
		}
		if got, err := next.r.ReadString('\n'); got != "$1\r\n" || err != nil {
			t.Fatalf("after a client's %s: a new client's GET read %q, %v; want a reply (client_connections: 1)", end.name, got, err)
		}
		if n := srv.Snapshot()[0].ClientConnections; n != 1 {
			t.Errorf("after a client's %s: client_connections %d while it lingers, want 1 (the new client)", end.name, n)
		}
		next.c.Close()
		first.c.Close()
		await.True(t, "no client connections", 10*time.Second, func() bool { return srv.Snapshot()[0].ClientConnections == 0 })
	}
}
