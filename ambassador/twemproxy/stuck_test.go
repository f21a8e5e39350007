package twemproxy_test

import (
	"bufio"
	"fmt"
	"io"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/podblocks/podblocks/ambassador/redis"
	"github.com/podblocks/podblocks/ambassador/twemproxy"
	"github.com/podblocks/podblocks/ambassador/twemproxy/twemproxytest"
	"github.com/podblocks/podblocks/internal/freeport"
	"github.com/podblocks/podblocks/internal/loopback"
	"github.com/podblocks/podblocks/lifecycletest"
)

// Servers that stop reading, and clients that stall: found in review of the one-hand-off hot path.

// A server that accepts and never reads must not hold up another server's traffic: a client reader
// stuck flushing to it used to keep the healthy server's batch unflushed for every client.
func TestStuckServerDoesNotBlockOthers(t *testing.T) {
	stuck := startStuckServer(t)
	healthy := startFakeRedis(t, func(conn, n int, args []string) string { return "+OK\r\n" })
	addr, _, pc := twemproxytest.StartPool(t, "r", true, "  server_connections: 1\n",
		[]string{stuck, healthy.addr()}, twemproxy.Protocols{Redis: &redis.Protocol{}})
	keyStuck, keyHealthy := keysOn(t, pc, stuck, healthy.addr())
	// One client pipelines requests to both servers, with values large enough to fill the stuck
	// server's socket.
	val := strings.Repeat("v", 100<<10)
	var b strings.Builder
	for range 300 {
		b.WriteString(encodeCmd("GET", keyStuck))
		b.WriteString(encodeCmd("GET", keyHealthy))
		b.WriteString(encodeCmd("SET", keyStuck, val))
	}
	c1 := dialResp(t, addr)
	go func() { _, _ = io.WriteString(c1.c, b.String()) }()
	time.Sleep(time.Second)
	c2 := dialResp(t, addr)
	_ = c2.c.SetReadDeadline(time.Now().Add(10 * time.Second))
	if got := c2.do(t, "GET", keyHealthy); got != "+OK" {
		t.Fatalf("GET %s on the healthy server while the other is stuck = %q, want +OK", keyHealthy, got)
	}
}

// keysOn returns a key that pc places on the server at addr a and one it places on the server at b.
func keysOn(t *testing.T, pc *twemproxy.PoolConfig, a, b string) (keyA, keyB string) {
	t.Helper()
	// The placer routes exactly as the proxy does; PoolConfig.Servers is in name order, so match
	// servers by address. Short sequential keys can all hash to one server of a two-server ring
	// (fnv1a_64, as nutcracker), hence the many candidates.
	placer := twemproxy.NewPlacer(pc, nil)
	for i := 0; i < 100000 && (keyA == "" || keyB == ""); i++ {
		k := fmt.Sprintf("user:%d:profile", i*7919)
		switch pc.Servers[placer.Place([]byte(k))].Addr {
		case a:
			keyA = k
		case b:
			keyB = k
		}
	}
	if keyA == "" || keyB == "" {
		t.Fatalf("no key split over the two servers (%s: %q, %s: %q)", a, keyA, b, keyB)
	}
	return keyA, keyB
}

// startStuckServer starts a server that accepts connections and never reads from them (until the
// end of the test) and returns its address.
func startStuckServer(t *testing.T) string {
	stop := make(chan struct{})
	addr := loopback.Serve(t, func(i int, c net.Conn) { <-stop })
	t.Cleanup(func() { close(stop) })
	return addr
}

// Run must return when its ctx ends even if a server stopped reading while run itself was writing
// the requests that queued during the connection's handshake.
func TestRunReturnsWhileServerStopsReading(t *testing.T) {
	stop := make(chan struct{})
	be := loopback.Serve(t, func(i int, c net.Conn) {
		br := bufio.NewReader(c)
		if _, err := readCommand(br); err != nil { // SELECT
			return
		}
		time.Sleep(500 * time.Millisecond) // requests queue meanwhile
		_, _ = io.WriteString(c, "+OK\r\n")
		<-stop // never read again
	})
	defer close(stop)
	addr, stopRun := runUntilStopped(t, "  redis_db: 1\n  server_connections: 1\n", be)
	val := strings.Repeat("v", 256<<10)
	var b strings.Builder
	for range 400 {
		b.WriteString(encodeCmd("SET", "k", val))
	}
	c1 := dialResp(t, addr)
	go func() { _, _ = io.WriteString(c1.c, b.String()) }()
	time.Sleep(2 * time.Second)
	stopRun()
}

// A client whose socket filled once (its replies went through the blocking writer, with a write
// deadline) must keep working after that deadline has passed.
func TestStalledClientWorksAfterWriteTimeout(t *testing.T) {
	big := strings.Repeat("x", 64<<10)
	be := startFakeRedis(t, bigValues(big))
	addr, _, _ := twemproxytest.StartPool(t, "r", true, "  server_connections: 1\n", []string{be.addr()},
		twemproxy.Protocols{Redis: &redis.Protocol{}}, twemproxy.WithClientWriteTimeout(time.Second))
	slow := dialResp(t, addr)
	keys := numbered("big", 100)
	var b strings.Builder
	for _, k := range keys {
		b.WriteString(encodeCmd("GET", k))
	}
	go func() { _, _ = io.WriteString(slow.c, b.String()) }()
	time.Sleep(300 * time.Millisecond) // ~6.5 MB of replies unread: the client stalls
	_ = slow.c.SetDeadline(time.Now().Add(30 * time.Second))
	for range keys {
		readReply(t, slow.r)
	}
	if got := slow.do(t, "GET", "a"); got != "$v-a" {
		t.Fatalf("GET a right after the stall = %q", got)
	}
	time.Sleep(1500 * time.Millisecond) // past the write deadline set during the stall
	if got := slow.do(t, "GET", "b"); got != "$v-b" {
		t.Fatalf("GET b after the stall's write deadline = %q, want $v-b", got)
	}
}

// Run must return when its ctx ends even while a server connection waits for the server to answer
// its handshake (here a SELECT it reads and never answers, with a 20 s timeout).
func TestRunReturnsDuringHandshake(t *testing.T) {
	stop := make(chan struct{})
	selected := make(chan struct{}, 1)
	be := loopback.Serve(t, func(i int, c net.Conn) {
		if args, err := readCommand(bufio.NewReader(c)); err == nil && args[0] == "SELECT" {
			select {
			case selected <- struct{}{}:
			default:
			}
		}
		<-stop
	})
	t.Cleanup(func() { close(stop) }) // before loopback.Serve's cleanup waits for the handler
	addr, stopRun := runUntilStopped(t, "  redis_db: 1\n  timeout: 20000\n", be)
	c := dialResp(t, addr)
	if _, err := io.WriteString(c.c, encodeCmd("GET", "k")); err != nil {
		t.Fatal(err)
	}
	select {
	case <-selected: // the connection is in its handshake
	case <-time.After(10 * time.Second):
		t.Fatal("the server got no SELECT")
	}
	stopRun()
}

// runUntilStopped runs a redis pool with the extra config lines in front of backend be and returns
// its address and a func that ends Run's ctx and fails the test unless Run returns (nil) within 5s.
// Run is stopped at the end of the test in any case.
func runUntilStopped(t *testing.T, extra, be string) (string, func()) {
	t.Helper()
	addr := freeport.TCP(t)
	cfg, err := twemproxy.Parse(fmt.Appendf(nil, "r:\n  listen: %s\n  redis: true\n%s  servers:\n   - %s:1\n", addr, extra, be))
	if err != nil {
		t.Fatal(err)
	}
	srv, err := twemproxy.NewServer(cfg, twemproxy.Protocols{Redis: &redis.Protocol{}})
	if err != nil {
		t.Fatal(err)
	}
	run := lifecycletest.StartReady(t, srv, 10*time.Second)
	return addr, func() {
		t.Helper()
		if err := run.Stop(5 * time.Second); err != nil {
			t.Fatal(err)
		}
	}
}
