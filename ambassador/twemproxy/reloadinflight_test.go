package twemproxy_test

import (
	"bufio"
	"fmt"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/podblocks/podblocks/ambassador/twemproxy"
	"github.com/podblocks/podblocks/internal/freeport"
	"github.com/podblocks/podblocks/internal/shardproc"
	"github.com/podblocks/podblocks/lifecycletest"
)

// startPausable starts memcached servers named good and bad (for the caller to pause) behind a
// pool "a" of the configuration yml(listen, timeout, good, bad) makes, and returns the Server, the
// configuration with another timeout (cfgOf), bad, a client connected to the pool, and a key bad
// owns.
func startPausable(t *testing.T, timeout int, yml func(listen string, timeout int, good, bad string) string) (srv *twemproxy.Server, cfgOf func(int) *twemproxy.Config,
	bad *shardproc.Proc, c net.Conn, br *bufio.Reader, key string) {
	t.Helper()
	if !shardproc.Have(shardproc.MemcachedPath) {
		t.Skipf("%s is not installed (Debian package memcached); skipping", shardproc.MemcachedPath)
	}
	good, err := shardproc.StartMemcached()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(good.Stop)
	bad, err = shardproc.StartMemcached()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(bad.Stop)
	listen := freeport.TCP(t)
	cfgOf = func(timeout int) *twemproxy.Config { return parseConfig(t, yml(listen, timeout, good.Addr, bad.Addr)) }
	cfg := cfgOf(timeout)
	srv, err = twemproxy.NewServer(cfg, bothProtocols)
	if err != nil {
		t.Fatal(err)
	}
	run := lifecycletest.StartReady(t, srv, 10*time.Second)
	t.Cleanup(func() {
		_ = bad.Resume()
		if err := run.Stop(10 * time.Second); err != nil {
			t.Error(err)
		}
	})
	pl := twemproxy.NewPlacer(cfg.Pools[0], nil)
	for i := 0; key == ""; i++ {
		if k := fmt.Sprintf("k%d", i); cfg.Pools[0].Servers[pl.Place([]byte(k))].Name == "bad" {
			key = k
		}
	}
	c, err = net.DialTimeout("tcp", cfg.Pools[0].ListenAddr, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return srv, cfgOf, bad, c, bufio.NewReader(c), key
}

// waitStats polls the stats of server name in pool a until ok holds, or fails after 10s.
func waitStats(t *testing.T, srv *twemproxy.Server, name, what string, ok func(twemproxy.ServerStats) bool) twemproxy.ServerStats {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		ss := serverStats(t, srv, "a", name)
		if ok(ss) {
			return ss
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: server %s's stats are %+v", what, name, ss)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// The requests a reload's old server connection still has in flight count where the stats look:
// their responses are counted once they come (requests and responses agree), and while they are
// awaited the server shows the open connection and the requests in its out_queue. The old code
// copied the counters once at the reload, so the 3 responses that came after it were never
// counted (responses stayed 3 below requests for good), and the server showed no connection and
// an empty out_queue while its old connection waited for them.
func TestReloadCountsWhatTheOldConnectionsFinish(t *testing.T) {
	yml := func(listen string, timeout int, good, bad string) string {
		return fmt.Sprintf("a:\n  listen: %s\n  timeout: %d\n  servers:\n   - %s:1 good\n   - %s:1 bad\n",
			listen, timeout, good, bad)
	}
	srv, cfgOf, bad, c, br, key := startPausable(t, 2000, yml)
	if err := bad.Pause(); err != nil {
		t.Skipf("cannot pause memcached: %v", err)
	}
	_ = c.SetDeadline(time.Now().Add(20 * time.Second))
	if _, err := fmt.Fprintf(c, "get %s\r\nget %s\r\nget %s\r\n", key, key, key); err != nil {
		t.Fatal(err)
	}
	waitStats(t, srv, "bad", "3 gets sent", func(ss twemproxy.ServerStats) bool { return ss.OutQueue == 3 })
	if err := srv.Reload(cfgOf(2100)); err != nil {
		t.Fatal(err)
	}
	during := serverStats(t, srv, "a", "bad")
	if during.OutQueue != 3 || during.ServerConnections != 1 || during.Requests != 3 {
		t.Errorf("after the reload, while the old connection awaits 3 replies: %+v, want out_queue 3, "+
			"server_connections 1, requests 3", during)
	}
	if err := bad.Resume(); err != nil {
		t.Fatal(err)
	}
	for i := range 3 {
		if line, err := br.ReadString('\n'); err != nil || line != "END\r\n" {
			t.Fatalf("reply %d: %q, %v; want END", i, line, err)
		}
	}
	want := func(ss twemproxy.ServerStats) bool {
		return ss.Requests == 3 && ss.Responses == 3 && ss.ResponseBytes == 3*int64(len("END\r\n")) && ss.OutQueue == 0
	}
	waitStats(t, srv, "bad", "the 3 replies read: want requests 3, responses 3, response_bytes 15, out_queue 0", want)
	// Once the old connection has retired (closed, its counters moved to the server's totals), the
	// counters stay.
	waitStats(t, srv, "bad", "the old connection closed", func(ss twemproxy.ServerStats) bool { return ss.ServerConnections == 0 })
	if ss := serverStats(t, srv, "a", "bad"); !want(ss) {
		t.Errorf("after the old connection closed: %+v, want requests 3, responses 3, response_bytes 15", ss)
	}
}

// A failure on a server connection a reload replaced counts in the pool the reload made: with
// server_failure_limit 1, a get that times out on the old connection ejects the server from the new
// distribution (the next get goes to the other server), and its server_timedout and
// server_ejected_at show it. The old code ejected it from the old state only: the log said "server
// ejected" and server_ejects went up, but the server stayed in the distribution, with
// server_timedout and server_ejected_at 0.
func TestReloadOldConnectionFailureEjects(t *testing.T) {
	// The get times out after 500ms, on the connection the reload (to 525ms) replaced.
	yml := func(listen string, timeout int, good, bad string) string {
		return fmt.Sprintf("a:\n  listen: %s\n  timeout: %d\n  auto_eject_hosts: true\n  server_failure_limit: 1\n"+
			"  server_retry_timeout: 600000\n  servers:\n   - %s:1 good\n   - %s:1 bad\n", listen, timeout/4, good, bad)
	}
	srv, cfgOf, bad, c, br, key := startPausable(t, 2000, yml)
	if err := bad.Pause(); err != nil {
		t.Skipf("cannot pause memcached: %v", err)
	}
	_ = c.SetDeadline(time.Now().Add(20 * time.Second))
	if _, err := fmt.Fprintf(c, "get %s\r\n", key); err != nil {
		t.Fatal(err)
	}
	waitStats(t, srv, "bad", "the get sent", func(ss twemproxy.ServerStats) bool { return ss.OutQueue == 1 })
	if err := srv.Reload(cfgOf(2100)); err != nil {
		t.Fatal(err)
	}
	if line, err := br.ReadString('\n'); err != nil || !strings.HasPrefix(line, "SERVER_ERROR") {
		t.Fatalf("the get on the paused server: %q, %v; want its timeout's SERVER_ERROR", line, err)
	}
	ss := waitStats(t, srv, "bad", "the timeout", func(ss twemproxy.ServerStats) bool { return ss.ServerTimedout > 0 || ss.Ejected })
	if ss.ServerTimedout != 1 || !ss.Ejected || ss.ServerEjectedAt == 0 {
		t.Errorf("the paused server after its timeout on the old connection: %+v, want server_timedout 1, "+
			"ejected, server_ejected_at set", ss)
	}
	if ejects := srv.Snapshot()[0].ServerEjects; ejects != 1 {
		t.Errorf("server_ejects = %d, want 1", ejects)
	}
	start := time.Now()
	if _, err := fmt.Fprintf(c, "get %s\r\n", key); err != nil {
		t.Fatal(err)
	}
	if line, err := br.ReadString('\n'); err != nil || line != "END\r\n" {
		t.Errorf("the next get: %q, %v after %v; want END from the other server", line, err, time.Since(start))
	}
}
