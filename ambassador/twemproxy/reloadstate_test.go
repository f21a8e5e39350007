package twemproxy_test

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/podblocks/podblocks/ambassador/twemproxy"
)

// serverStats returns the stats of the server called name in pool.
func serverStats(t *testing.T, srv *twemproxy.Server, pool, name string) twemproxy.ServerStats {
	t.Helper()
	for _, ps := range srv.Snapshot() {
		for _, ss := range ps.Servers {
			if ps.Name == pool && ss.Name == name {
				return ss
			}
		}
	}
	t.Fatalf("no server %s in pool %s", name, pool)
	return twemproxy.ServerStats{}
}

// A server ejected for server_retry_timeout stays ejected across a reload, of the same
// configuration or of one that changes the pool but not the server, and the servers' counters go on
// from where they were: the old code built every server anew, so the paused server got the next
// request (which timed out) and the stats dropped to 0.
func TestReloadKeepsServerState(t *testing.T) {
	yml := func(listen string, timeout int, good, bad string) string {
		return fmt.Sprintf("a:\n  listen: %s\n  timeout: %d\n  auto_eject_hosts: true\n  server_failure_limit: 1\n"+
			"  server_retry_timeout: 600000\n  servers:\n   - %s:1 good\n   - %s:1 bad\n", listen, timeout, good, bad)
	}
	srv, cfgOf, bad, c, br, key := startPausable(t, 200, yml)
	get := func() string {
		t.Helper()
		_ = c.SetDeadline(time.Now().Add(10 * time.Second))
		if _, err := fmt.Fprintf(c, "get %s\r\n", key); err != nil {
			t.Fatal(err)
		}
		line, err := br.ReadString('\n')
		if err != nil {
			t.Fatal(err)
		}
		return strings.TrimSuffix(line, "\r\n")
	}
	if err := bad.Pause(); err != nil {
		t.Skipf("cannot pause memcached: %v", err)
	}
	if got := get(); got == "END" {
		t.Fatalf("get on the paused server = %q, want a timeout", got)
	}
	if got := get(); got != "END" {
		t.Fatalf("get after the paused server's ejection = %q, want END from the other server", got)
	}
	before := serverStats(t, srv, "a", "bad")
	goodBefore := serverStats(t, srv, "a", "good")
	if !before.Ejected || before.ServerTimedout == 0 || before.Requests == 0 || goodBefore.Requests == 0 {
		t.Fatalf("before the reloads: bad %+v, good %+v", before, goodBefore)
	}
	for _, tc := range []struct {
		name    string
		timeout int
	}{{"same configuration", 200}, {"new timeout", 300}} {
		if err := srv.Reload(cfgOf(tc.timeout)); err != nil {
			t.Fatalf("%s: Reload: %v", tc.name, err)
		}
		start := time.Now()
		if got := get(); got != "END" {
			t.Errorf("%s: get after the reload = %q after %v, want END from the other server", tc.name, got, time.Since(start))
		}
		after := serverStats(t, srv, "a", "bad")
		if !after.Ejected || after.ServerTimedout < before.ServerTimedout || after.Requests < before.Requests ||
			after.ServerEjectedAt != before.ServerEjectedAt {
			t.Errorf("%s: the paused server after the reload: %+v, before: %+v", tc.name, after, before)
		}
		if g := serverStats(t, srv, "a", "good"); g.Requests <= goodBefore.Requests || g.Responses <= goodBefore.Responses {
			t.Errorf("%s: the other server's counters after the reload: %+v, before: %+v", tc.name, g, goodBefore)
		}
		goodBefore = serverStats(t, srv, "a", "good")
	}
}
