//go:build linux

package twemproxy_test

import (
	"io"
	"sync/atomic"
	"testing"
	"time"

	"github.com/podblocks/podblocks/ambassador/twemproxy"
)

// A reply already in the session's socket when its request becomes overdue is delivered, not
// reported as timed out: here the poller lags past the timeout before the event of a reply the
// server sent at once, so the session's timer hands the session back to its goroutine with its
// deadline already past, and the reply waits in the socket.
func TestReplyInSocketWhenPollerLagsPastTimeout(t *testing.T) {
	const timeout = 200 * time.Millisecond
	var lag atomic.Bool
	t.Cleanup(twemproxy.SetRoundSessionHook(func() {
		if lag.CompareAndSwap(true, false) {
			time.Sleep(3 * timeout)
		}
	})) // registered first, so restored after the pool stopped
	be := startFakeRedis(t, func(conn, n int, args []string) string { return bulk("v-" + args[1]) })
	addr, srv := startFakePool(t, "  timeout: 200\n  server_connections: 1\n", be)
	c := dialResp(t, addr)
	if g := c.do(t, "GET", "a"); g != "$v-a" {
		t.Fatalf("GET a: %q", g)
	}
	awaitPolledOne(t, "the session", srv, twemproxy.PolledSessions)
	lag.Store(true)
	_ = c.c.SetDeadline(time.Now().Add(10 * time.Second))
	if _, err := io.WriteString(c.c, encodeCmd("GET", "b")); err != nil {
		t.Fatal(err)
	}
	if g := readReplyErr(c.r); g != "$v-b" {
		t.Fatalf("GET b, whose reply was in the socket when the lagging poller let it be overdue: %q, want $v-b", g)
	}
	if lag.Load() {
		t.Fatal("the poller did not lag: no session event came")
	}
	if n := srv.Snapshot()[0].Servers[0].ServerTimedout; n != 0 {
		t.Errorf("server_timedout = %d, want 0", n)
	}
}
