package twemproxy_test

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/podblocks/podblocks/ambassador/redis"
	"github.com/podblocks/podblocks/ambassador/twemproxy"
	"github.com/podblocks/podblocks/internal/shardproc"
)

// TestReloadKeepsClients reloads a running server with more servers, a new pool and a removed
// pool: the open client connection keeps working without reconnecting, keys follow the new
// placement, the new pool listens, the removed one stops; stats and metrics follow.
func TestReloadKeepsClients(t *testing.T) {
	if !shardproc.Have(shardproc.RedisPath) {
		t.Skipf("%s is not installed (Debian package redis-server); skipping", shardproc.RedisPath)
	}
	var backends []*shardproc.Proc
	for range 3 {
		p, err := shardproc.StartRedis()
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(p.Stop)
		backends = append(backends, p)
	}
	ports, err := shardproc.FreePorts(4) // three pools and the stats port
	if err != nil {
		t.Fatal(err)
	}
	pool := func(name string, port int, servers ...*shardproc.Proc) string {
		s := fmt.Sprintf("%s:\n  listen: 127.0.0.1:%d\n  redis: true\n  hash: md5\n  servers:\n", name, port)
		for _, b := range servers {
			s += fmt.Sprintf("   - %s:1\n", b.Addr)
		}
		return s
	}
	cfg1, err := twemproxy.Parse([]byte(pool("main", ports[0], backends[0]) + pool("old", ports[1], backends[0])))
	if err != nil {
		t.Fatal(err)
	}
	statsPort := ports[3]
	reg := prometheus.NewRegistry()
	srv, err := twemproxy.NewServer(cfg1, twemproxy.Protocols{Redis: &redis.Protocol{}},
		twemproxy.WithRegisterer(reg), twemproxy.WithStatsAddr(fmt.Sprintf("127.0.0.1:%d", statsPort)))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- srv.Run(ctx) }()
	defer func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Run: %v", err)
		}
	}()
	<-srv.Ready()
	mainAddr := fmt.Sprintf("127.0.0.1:%d", ports[0])
	c := dialResp(t, mainAddr)
	if got := c.do(t, "SET", "before", "1"); got != "+OK" {
		t.Fatal(got)
	}

	cfg2, err := twemproxy.Parse([]byte(pool("main", ports[0], backends...) + pool("new", ports[2], backends[1])))
	if err != nil {
		t.Fatal(err)
	}
	if err := srv.Reload(cfg2); err != nil {
		t.Fatal(err)
	}
	pl := twemproxy.NewPlacer(cfg2.Pool("main"), nil)
	seen := map[string]bool{}
	for i := range 60 {
		k := fmt.Sprintf("after:%d", i)
		if got := c.do(t, "SET", k, "2"); got != "+OK" { // same connection as before the reload
			t.Fatalf("SET %s on the pre-reload connection: %s", k, got)
		}
		owner := cfg2.Pool("main").Servers[pl.Place([]byte(k))].Addr
		seen[owner] = true
		if got := dialResp(t, owner).do(t, "GET", k); got != "$2" {
			t.Fatalf("key %s not on %s after reload: %s", k, owner, got)
		}
	}
	if len(seen) < 2 {
		t.Errorf("keys used %d servers after growing the pool to 3", len(seen))
	}
	if got := dialResp(t, fmt.Sprintf("127.0.0.1:%d", ports[2])).do(t, "PING"); got != "+PONG" {
		t.Errorf("new pool: %s", got)
	}
	if c, err := net.DialTimeout("tcp", fmt.Sprintf("127.0.0.1:%d", ports[1]), time.Second); err == nil {
		c.Close()
		t.Error("removed pool still accepts connections")
	}
	// A config that cannot apply changes nothing.
	bad, err := twemproxy.Parse([]byte(pool("main", ports[0], backends[0])))
	if err != nil {
		t.Fatal(err)
	}
	bad.Pools[0].Redis = false // no memcache protocol was given to this server
	if err := srv.Reload(bad); err == nil {
		t.Error("Reload accepted a pool it has no protocol for")
	}
	if got := c.do(t, "GET", "after:0"); got != "$2" {
		t.Errorf("after a rejected reload: %s", got)
	}

	// Stats: nutcracker's JSON document on the stats port.
	sc, err := net.DialTimeout("tcp", fmt.Sprintf("127.0.0.1:%d", statsPort), 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	raw, err := io.ReadAll(sc)
	sc.Close()
	if err != nil {
		t.Fatal(err)
	}
	var doc map[string]any
	if err := json.Unmarshal(raw, &doc); err != nil {
		t.Fatalf("stats JSON: %v\n%s", err, raw)
	}
	mainStats, ok := doc["main"].(map[string]any)
	if !ok {
		t.Fatalf("no pool main in stats: %s", raw)
	}
	var requests float64
	for _, b := range backends {
		s, ok := mainStats[b.Addr].(map[string]any)
		if !ok {
			t.Fatalf("no server %s in pool stats: %s", b.Addr, raw)
		}
		requests += s["requests"].(float64)
	}
	if requests < 60 || mainStats["client_connections"].(float64) < 1 || doc["service"] != "nutcracker" {
		t.Errorf("stats: requests=%v client_connections=%v service=%v", requests, mainStats["client_connections"], doc["service"])
	}
	if _, ok := doc["old"]; ok {
		t.Error("removed pool still in stats")
	}
	// Prometheus metrics.
	mfs, err := reg.Gather()
	n := 0
	for _, mf := range mfs {
		if mf.GetName() == "podblocks_sharding_server_requests_total" {
			n = len(mf.GetMetric())
		}
	}
	if err != nil || n != 4 {
		t.Errorf("server request series = %d, %v; want 4 (3 main + 1 new)", n, err)
	}
	if _, _, rows := srv.Statusz(); len(rows) != 4 || !strings.Contains(strings.Join(rows[0], " "), "main") {
		t.Errorf("statusz rows: %v", rows)
	}
}
