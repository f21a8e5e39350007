package twemproxy_test

import (
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/podblocks/podblocks/ambassador/memcache"
	"github.com/podblocks/podblocks/ambassador/redis"
	"github.com/podblocks/podblocks/ambassador/twemproxy"
	"github.com/podblocks/podblocks/ambassador/twemproxy/twemproxytest"
	"github.com/podblocks/podblocks/internal/await"
	"github.com/podblocks/podblocks/internal/loopback"
)

// echoLen answers SET k v with v's length and GET k with "v-"+k, so a reply shows that the
// request reached the server whole.
func echoLen(conn, n int, args []string) string {
	if args[0] == "SET" {
		return fmt.Sprintf(":%d\r\n", len(args[2]))
	}
	return bulk("v-" + args[1])
}

// Requests that arrive in pieces of any size, small ones and ones larger than a read, come out
// whole and in order, on the poller (Linux) and on the goroutines that take over a client from it
// mid-request.
func TestRequestsSplitAcrossReads(t *testing.T) {
	addr, _ := startFakePool(t, "", startFakeRedis(t, echoLen), startFakeRedis(t, echoLen))
	for _, chunk := range []int{1, 7, 300, 5000, 40000} {
		t.Run(fmt.Sprint(chunk), func(t *testing.T) {
			if err := sendSplit(dialResp(t, addr), uint64(chunk), chunk, 60, 5, min(3*16<<10, chunk*4096)); err != nil {
				t.Fatal(err)
			}
		})
	}
}

// The same with many clients at once, each moving between the poller and its goroutine while
// the others do, over two connections per server, one server now and then slow to answer.
func TestConcurrentClientsSplitAcrossReads(t *testing.T) {
	slow := func(conn, n int, args []string) string {
		if n%97 == 0 {
			time.Sleep(time.Millisecond)
		}
		return echoLen(conn, n, args)
	}
	addr, _ := startFakePool(t, "  server_connections: 2\n", startFakeRedis(t, slow), startFakeRedis(t, echoLen))
	chunks := []int{1, 7, 100, 300, 5000, 9000, 17000, 40000}
	errs := make(chan error, 2*len(chunks))
	for i := range 2 * len(chunks) {
		c, chunk := dialResp(t, addr), chunks[i%len(chunks)]
		n, vmax := 1500, 30000
		if chunk < 300 {
			n, vmax = 300, 200
		}
		go func() { errs <- sendSplit(c, uint64(i), chunk, n, 7, vmax) }()
	}
	for range 2 * len(chunks) {
		if err := <-errs; err != nil {
			t.Error(err)
		}
	}
}

// sendSplit sends n requests on c in pieces of 1 to chunk bytes: GETs, and one in every setEvery
// a SET of up to vmax bytes; and checks the replies (seed picks the values and the pieces).
func sendSplit(c *respClient, seed uint64, chunk, n, setEvery, vmax int) error {
	rng := rand.New(rand.NewPCG(seed, 1))
	var stream strings.Builder
	var want []string
	for i := range n {
		k := fmt.Sprintf("k%d-%d-%d", seed, chunk, i)
		if i%setEvery == 0 {
			v := strings.Repeat("v", rng.IntN(vmax))
			stream.WriteString(encodeCmd("SET", k, v))
			want = append(want, fmt.Sprintf(":%d", len(v)))
			continue
		}
		stream.WriteString(encodeCmd("GET", k))
		want = append(want, "$v-"+k)
	}
	wrng := rand.New(rand.NewPCG(seed, 2))
	go func() {
		b := stream.String()
		for len(b) > 0 {
			n := min(len(b), 1+wrng.IntN(chunk))
			if _, err := io.WriteString(c.c, b[:n]); err != nil {
				return
			}
			b = b[n:]
			if wrng.IntN(32) == 0 {
				time.Sleep(time.Millisecond)
			}
		}
	}()
	_ = c.c.SetDeadline(time.Now().Add(30 * time.Second))
	for i, w := range want {
		if got := readReplyErr(c.r); got != w {
			return fmt.Errorf("chunk %d: reply %d = %.40q, want %.40q", chunk, i, got, w)
		}
	}
	return nil
}

// Clients go (back) to the poller once their goroutine has nothing buffered: after a request that
// arrived in pieces, after a stall of their replies, and when idle.
func TestClientsReturnToPoller(t *testing.T) {
	if runtime.GOOS != "linux" {
		t.Skip("the poller is Linux-only")
	}
	big := strings.Repeat("x", 64<<10)
	addr, srv, _ := twemproxytest.StartPool(t, "r", true, "", []string{startFakeRedis(t, bigValues(big)).addr()},
		twemproxy.Protocols{Redis: &redis.Protocol{}})
	polled := func(want int) {
		t.Helper()
		await.True(t, "every client on the poller", 10*time.Second, func() bool {
			p, n := twemproxy.PolledClients(srv, "r")
			return p == want && n == want
		})
	}
	a, b := dialResp(t, addr), dialResp(t, addr)
	if got := a.do(t, "GET", "x"); got != "$v-x" {
		t.Fatalf("GET x = %q", got)
	}
	if got := b.do(t, "GET", "y"); got != "$v-y" {
		t.Fatalf("GET y = %q", got)
	}
	polled(2)
	// A request in two pieces, the second after the first has been read.
	cmd := encodeCmd("GET", "split")
	if _, err := io.WriteString(a.c, cmd[:5]); err != nil {
		t.Fatal(err)
	}
	time.Sleep(20 * time.Millisecond)
	if _, err := io.WriteString(a.c, cmd[5:]); err != nil {
		t.Fatal(err)
	}
	if got := readReply(t, a.r); got != "$v-split" {
		t.Fatalf("GET split = %q", got)
	}
	// Replies that fill b's socket: its reader stops at 1 MB of replies not taken.
	got := pipeline(t, b, gets(numbered("big", 100)...))
	for i, g := range got {
		if want := "$big" + fmt.Sprint(i) + big; g != want {
			t.Fatalf("big reply %d: %d bytes, want %d", i, len(g), len(want))
		}
	}
	polled(2)
	if got := b.do(t, "GET", "z"); got != "$v-z" {
		t.Fatalf("GET z = %q", got)
	}
}

// A client that sends nothing for the idle timeout is closed, also while the poller reads it; one
// that keeps sending is not.
func TestIdleClientClosed(t *testing.T) {
	be := startFakeRedis(t, echoLen)
	addr, _, _ := twemproxytest.StartPool(t, "r", true, "", []string{be.addr()},
		twemproxy.Protocols{Redis: &redis.Protocol{}}, twemproxy.WithClientIdleTimeout(300*time.Millisecond))
	idle, busy := dialResp(t, addr), dialResp(t, addr)
	if got := idle.do(t, "GET", "a"); got != "$v-a" {
		t.Fatalf("GET a = %q", got)
	}
	start := time.Now()
	deadline := start.Add(900 * time.Millisecond)
	for time.Now().Before(deadline) {
		if got := busy.do(t, "GET", "b"); got != "$v-b" {
			t.Fatalf("GET b on the busy client = %q", got)
		}
		time.Sleep(50 * time.Millisecond)
	}
	_ = idle.c.SetReadDeadline(time.Now().Add(5 * time.Second))
	if _, err := idle.r.ReadByte(); err != io.EOF {
		t.Fatalf("idle client: read = %v, want EOF", err)
	}
	if waited := time.Since(start); waited < 300*time.Millisecond {
		t.Fatalf("idle client closed after %v, before the 300ms timeout", waited)
	}
	if got := busy.do(t, "GET", "c"); got != "$v-c" {
		t.Fatalf("GET c on the busy client = %q", got)
	}
}

// A client that sends its last requests and shuts its side down at once (nc -N, a script's pipe)
// gets the replies and then the end of the stream, also when the poller finds the data and the
// end in one readiness event: a short read does not mean the stream's end was seen. One that
// closes right after requests with no reply (noreply) leaves the pool.
func TestClientEndAfterRequests(t *testing.T) {
	const clients = 20
	t.Run("half-close", func(t *testing.T) { testHalfCloseAfterRequests(t, clients) })
	t.Run("close after noreply", func(t *testing.T) { testCloseAfterNoreply(t, clients) })
}

func testHalfCloseAfterRequests(t *testing.T, clients int) {
	addr, _ := startFakePool(t, "", startFakeRedis(t, echoLen))
	for i := range clients {
		c := dialResp(t, addr)
		if got := c.do(t, "GET", "a"); got != "$v-a" { // the client goes to the poller
			t.Fatalf("GET a = %q", got)
		}
		if _, err := io.WriteString(c.c, encodeCmd("GET", fmt.Sprint("b", i))); err != nil {
			t.Fatal(err)
		}
		if err := c.c.(*net.TCPConn).CloseWrite(); err != nil {
			t.Fatal(err)
		}
		if got := readReply(t, c.r); got != fmt.Sprint("$v-b", i) {
			t.Fatalf("client %d: GET b = %q", i, got)
		}
		_ = c.c.SetReadDeadline(time.Now().Add(5 * time.Second))
		if _, err := c.r.ReadByte(); err != io.EOF {
			t.Fatalf("client %d, after its half-close: read = %v, want EOF", i, err)
		}
		c.c.Close()
	}
}

// memcache requests with no reply, then a close: nothing is written back, so nothing but the end
// of the stream says the client is gone.
func testCloseAfterNoreply(t *testing.T, clients int) {
	be := loopback.Serve(t, func(_ int, c net.Conn) { _, _ = io.Copy(io.Discard, c) })
	maddr, msrv, _ := twemproxytest.StartPool(t, "m", false, "", []string{be}, twemproxy.Protocols{Memcache: &memcache.Protocol{Version: "1.6.0"}})
	for range clients {
		c := dialResp(t, maddr)
		if _, err := io.WriteString(c.c, "version\r\n"); err != nil { // answered by the proxy
			t.Fatal(err)
		}
		if line, err := c.r.ReadString('\n'); err != nil || !strings.HasPrefix(line, "VERSION") {
			t.Fatalf("version = %q, %v", line, err)
		}
		if _, err := io.WriteString(c.c, "set k 0 0 1 noreply\r\nv\r\n"); err != nil {
			t.Fatal(err)
		}
		c.c.Close()
	}
	await.True(t, "every memcache client gone", 10*time.Second, func() bool {
		_, n := twemproxy.PolledClients(msrv, "m")
		return n == 0
	})
}

// A server connection that is full holds up only the clients that wrote to it: the poller must
// not hand the full connection to a client that did not fill it (here the one that filled it sent
// QUIT after its request, and the client after it only uses the healthy server).
func TestFullServerHoldsUpOnlyItsClients(t *testing.T) {
	stuck := startStuckServer(t)
	healthy := startFakeRedis(t, func(conn, n int, args []string) string { return "+OK\r\n" })
	addr, srv, pc := twemproxytest.StartPool(t, "r", true, "  server_connections: 1\n",
		[]string{stuck, healthy.addr()}, twemproxy.Protocols{Redis: &redis.Protocol{}})
	keyStuck, keyHealthy := keysOn(t, pc, stuck, healthy.addr())
	// Fill the stuck server's connection to its limit.
	filler := dialResp(t, addr)
	set := encodeCmd("SET", keyStuck, strings.Repeat("v", 64<<10))
	go func() {
		for range 1000 {
			if _, err := io.WriteString(filler.c, set); err != nil {
				return
			}
		}
	}()
	await.True(t, "the stuck server's queue full", 10*time.Second, func() bool {
		for _, s := range srv.Snapshot()[0].Servers {
			if s.Addr == stuck && s.InQueueBytes >= 4<<20 {
				return true
			}
		}
		return false
	})
	// One request for each server and QUIT, in one read: the stuck one finds the connection full.
	q := dialResp(t, addr)
	if _, err := io.WriteString(q.c, encodeCmd("GET", keyHealthy)+encodeCmd("GET", keyStuck)+encodeCmd("QUIT")); err != nil {
		t.Fatal(err)
	}
	_ = q.c.SetReadDeadline(time.Now().Add(10 * time.Second))
	if got := readReply(t, q.r); got != "+OK" {
		t.Fatalf("GET %s before QUIT = %q", keyHealthy, got)
	}
	c := dialResp(t, addr)
	for i := range 3 {
		_ = c.c.SetDeadline(time.Now().Add(5 * time.Second))
		if _, err := io.WriteString(c.c, encodeCmd("GET", keyHealthy)); err != nil {
			t.Fatal(err)
		}
		line, err := c.r.ReadString('\n')
		if err != nil || line != "+OK\r\n" {
			t.Fatalf("GET %s #%d on the healthy server = %q, %v", keyHealthy, i, line, err)
		}
	}
}
