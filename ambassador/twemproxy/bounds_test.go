package twemproxy_test

import (
	"bufio"
	"io"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/podblocks/podblocks/ambassador/redis"
	"github.com/podblocks/podblocks/ambassador/twemproxy"
	"github.com/podblocks/podblocks/ambassador/twemproxy/twemproxytest"
	"github.com/podblocks/podblocks/internal/await"
	"github.com/podblocks/podblocks/internal/loopback"
)

// Memory bounds and reply latency under slow peers: found in review of the one-hand-off hot path.

// A server that stops reading must not let its output buffer grow without bound: client readers
// wait for room once it holds a few megabytes, where each client used to be able to queue up to
// 1024 requests (here three clients send 1000 x 64 KB each).
func TestStuckServerOutputBounded(t *testing.T) {
	stuck := startStuckServer(t)
	addr, srv, _ := twemproxytest.StartPool(t, "r", true, "  server_connections: 1\n", []string{stuck},
		twemproxy.Protocols{Redis: &redis.Protocol{}})
	loadAndCheckServerQueue(t, addr, srv, 3*time.Second)
}

// Requests queued while a server connection is being set up are bounded too: here the server
// accepts and never answers the SELECT of the handshake, so the connection stays in the making
// for its timeout while three clients send 1000 x 64 KB each.
func TestQueueWhileConnectingBounded(t *testing.T) {
	stuck := startStuckServer(t)
	addr, srv, _ := twemproxytest.StartPool(t, "r", true, "  server_connections: 1\n  redis_db: 1\n  timeout: 5000\n",
		[]string{stuck}, twemproxy.Protocols{Redis: &redis.Protocol{}})
	loadAndCheckServerQueue(t, addr, srv, 3*time.Second)
}

// loadAndCheckServerQueue has three clients send 1000 SETs of 64 KB each and checks, for d, that
// the server's queue never holds more than its bound and that it did fill.
func loadAndCheckServerQueue(t *testing.T, addr string, srv *twemproxy.Server, d time.Duration) {
	t.Helper()
	cmd := encodeCmd("SET", "k", strings.Repeat("v", 64<<10))
	for range 3 {
		c := dialResp(t, addr)
		go func() {
			for range 1000 {
				if _, err := io.WriteString(c.c, cmd); err != nil {
					return
				}
			}
		}()
	}
	// The bound: the buffer's limit (4 MB) plus one batch of 64 requests per client.
	const limit = 4<<20 + 3*64*(64<<10+64)
	var most int64
	deadline := time.Now().Add(d)
	for time.Now().Before(deadline) {
		b := srv.Snapshot()[0].Servers[0].InQueueBytes
		most = max(most, b)
		if b > limit {
			t.Fatalf("the server's queue holds %d bytes, more than %d", b, limit)
		}
		time.Sleep(10 * time.Millisecond)
	}
	if most < 4<<20 {
		t.Fatalf("the queue never filled (at most %d bytes): the test did not load it", most)
	}
}

// A client that stops reading is cut off once 32 MB of its replies are buffered, instead of
// buffering every reply of its up to 1024 requests in flight (here 300 x 256 KB).
func TestStalledClientOutputBounded(t *testing.T) {
	big := strings.Repeat("x", 256<<10)
	be := startFakeRedis(t, func(conn, n int, args []string) string {
		if strings.HasPrefix(args[1], "big") {
			return bulk(big)
		}
		return bulk("v-" + args[1])
	})
	addr, srv := startFakePool(t, "  server_connections: 1\n", be)
	stalled := dialResp(t, addr)
	var b strings.Builder
	keys := numbered("big", 300)
	for _, k := range keys {
		b.WriteString(encodeCmd("GET", k))
	}
	if _, err := io.WriteString(stalled.c, b.String()); err != nil {
		t.Fatal(err)
	}
	await.True(t, "the stalled client to be cut off", 20*time.Second, func() bool {
		return srv.Snapshot()[0].ClientErr > 0
	})
	_ = stalled.c.SetReadDeadline(time.Now().Add(10 * time.Second))
	n, err := io.Copy(io.Discard, stalled.c)
	if full := int64(len(keys) * len(bulk(big))); n >= full {
		t.Fatalf("read %d bytes (%v) from the cut-off client, every reply (%d)", n, err, full)
	}
	other := dialResp(t, addr)
	if g := other.do(t, "GET", "a"); g != "$v-a" {
		t.Fatalf("another client after the cut-off: %q", g)
	}
}

// A completed reply is written to its client before the server reader waits for the rest of a
// slowly arriving reply behind it, instead of at the end of the reader's batch.
func TestReplyNotHeldBehindPartialReply(t *testing.T) {
	release := make(chan struct{})
	be := loopback.Serve(t, func(i int, c net.Conn) {
		br := bufio.NewReader(c)
		for range 2 { // GET a, then GET b
			if _, err := readCommand(br); err != nil {
				return
			}
		}
		// a's reply and the start of b's in one write; the rest of b's later.
		if _, err := io.WriteString(c, "$3\r\nv-a\r\n$5\r\nv-"); err != nil {
			return
		}
		<-release
		_, _ = io.WriteString(c, "b..\r\n")
		_, _ = io.Copy(io.Discard, c)
	})
	// Preconnected, the server reader waits for replies before a's request: it takes a's and b's
	// requests together, as one batch.
	addr, _, _ := twemproxytest.StartPool(t, "r", true, "  server_connections: 1\n  preconnect: true\n",
		[]string{be}, twemproxy.Protocols{Redis: &redis.Protocol{}})
	var releaseOnce sync.Once
	defer releaseOnce.Do(func() { close(release) })
	a, bc := dialResp(t, addr), dialResp(t, addr)
	if _, err := io.WriteString(a.c, encodeCmd("GET", "a")); err != nil {
		t.Fatal(err)
	}
	time.Sleep(100 * time.Millisecond) // a's request goes first
	if _, err := io.WriteString(bc.c, encodeCmd("GET", "b")); err != nil {
		t.Fatal(err)
	}
	_ = a.c.SetReadDeadline(time.Now().Add(2 * time.Second))
	if g := readReplyErr(a.r); g != "$v-a" {
		t.Fatalf("a's reply while b's is half-arrived: %q", g)
	}
	releaseOnce.Do(func() { close(release) })
	_ = bc.c.SetReadDeadline(time.Now().Add(10 * time.Second))
	if g := readReplyErr(bc.r); g != "$v-b.." {
		t.Fatalf("b's reply: %q", g)
	}
}

// readReplyErr reads one bulk reply as "$value", or returns the error's text.
func readReplyErr(r *bufio.Reader) string {
	line, err := r.ReadString('\n')
	if err != nil {
		return "error: " + err.Error()
	}
	if !strings.HasPrefix(line, "$") {
		return strings.TrimSuffix(line, "\r\n")
	}
	val, err := r.ReadString('\n')
	if err != nil {
		return "error: " + err.Error()
	}
	return "$" + strings.TrimSuffix(val, "\r\n")
}

// The limit on a stalled client's replies does not cut off a client that reads: a reply larger
// than the limit, and the reply right behind it, both reach it.
func TestReplyLargerThanLimitGoesThrough(t *testing.T) {
	huge := strings.Repeat("h", 40<<20)
	be := startFakeRedis(t, func(conn, n int, args []string) string {
		if args[1] == "huge" {
			return bulk(huge)
		}
		return bulk("v-" + args[1])
	})
	addr, _ := startFakePool(t, "  server_connections: 1\n", be)
	c := dialResp(t, addr)
	got := pipeline(t, c, gets("huge", "x"))
	if got[0] != "$"+huge {
		t.Fatalf("GET huge: %d bytes, want %d", len(got[0])-1, len(huge))
	}
	if got[1] != "$v-x" {
		t.Fatalf("GET x behind it: %q", got[1])
	}
}
