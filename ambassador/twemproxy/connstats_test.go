package twemproxy_test

import (
	"encoding/json"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/podblocks/podblocks/ambassador/redis"
	"github.com/podblocks/podblocks/ambassador/twemproxy"
	"github.com/podblocks/podblocks/ambassador/twemproxy/twemproxytest"
	"github.com/podblocks/podblocks/internal/await"
	"github.com/podblocks/podblocks/internal/freeport"
)

// curr_connections and total_connections count what nutcracker 0.5.0 counts (every struct conn:
// see twemproxy's nc_connection.c), as checked against Debian's nutcracker: each pool's listener,
// each client connection, and each server connection from its dial on, so a refused dial adds one
// to the total only. The stats port's own connections are not counted. The old code counted the
// client connections only: 0/0 at start.
func TestStatsConnectionCounts(t *testing.T) {
	be := startFakeRedis(t, func(conn, n int, args []string) string { return bulk("v") })
	refused := freeport.TCP(t) // nothing listens there
	addr, srv, pc := twemproxytest.StartPool(t, "r", true, "  server_connections: 2\n", []string{be.addr(), refused},
		twemproxy.Protocols{Redis: &redis.Protocol{}})
	counts := func() (curr, total int64) {
		var doc struct{ Curr, Total int64 }
		raw := strings.NewReplacer(`"curr_connections"`, `"Curr"`, `"total_connections"`, `"Total"`).Replace(string(srv.StatsJSON()))
		if err := json.Unmarshal([]byte(raw), &doc); err != nil {
			t.Fatalf("stats JSON: %v", err)
		}
		return doc.Curr, doc.Total
	}
	want := func(what string, curr, total int64) {
		t.Helper()
		var c, n int64
		await.True(t, fmt.Sprintf("%s: curr_connections %d, total_connections %d", what, curr, total), 10*time.Second, func() bool {
			c, n = counts()
			return c == curr && n == total
		})
	}
	want("at start (the listener)", 1, 1)
	live, dead := keyOn(t, pc, be.addr()), keyOn(t, pc, refused)
	a, b := dialResp(t, addr), dialResp(t, addr)
	want("two clients", 3, 3)
	// Each client uses its own of the live server's two connections.
	for _, c := range []*respClient{a, b} {
		if got := c.do(t, "GET", live); got != "$v" {
			t.Fatalf("GET %s: %s", live, got)
		}
	}
	want("two server connections", 5, 5)
	if got := a.do(t, "GET", dead); !strings.HasPrefix(got, "-ERR") {
		t.Fatalf("GET %s on a refused server: %s", dead, got)
	}
	want("a refused dial", 5, 6)
	b.c.Close()
	want("a client gone", 4, 6)
}

// keyOn returns a key that pc places on the server at addr.
func keyOn(t *testing.T, pc *twemproxy.PoolConfig, addr string) string {
	t.Helper()
	pl := twemproxy.NewPlacer(pc, nil)
	for i := range 10000 {
		if k := fmt.Sprintf("k%d", i); pc.Servers[pl.Place([]byte(k))].Addr == addr {
			return k
		}
	}
	t.Fatalf("no key on server %s", addr)
	return ""
}
