package twemproxy_test

import (
	"bufio"
	"fmt"
	"io"
	"net"
	"strings"
	"sync"
	"sync/atomic"
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
	checkServerQueue(t, srv, 4<<20+3*64*(64<<10+64), d)
}

// checkServerQueue waits up to 30 s for the first server's queue to fill (to 4 MB), then checks
// for d more that it never holds more than limit bytes; the bound is checked from the start. The
// wait to fill is generous because under -race on a loaded machine the proxy may take its
// clients' bytes hardly faster than a slow server drains them.
func checkServerQueue(t *testing.T, srv *twemproxy.Server, limit int64, d time.Duration) {
	t.Helper()
	var most int64
	deadline := time.Now().Add(30 * time.Second)
	filled := false
	for time.Now().Before(deadline) {
		b := srv.Snapshot()[0].Servers[0].InQueueBytes
		most = max(most, b)
		if b > limit {
			t.Fatalf("the server's queue holds %d bytes, more than %d", b, limit)
		}
		if !filled && most >= 4<<20 {
			filled = true
			deadline = time.Now().Add(d)
		}
		time.Sleep(5 * time.Millisecond)
	}
	if !filled {
		t.Fatalf("the queue never filled (at most %d bytes in 30 s): the test did not load it", most)
	}
}

// A client that stops reading is cut off once it has taken nothing for 5 s with more than 32 MB
// of its replies waiting, instead of keeping every reply of its up to 1024 requests in flight
// (here 300 x 256 KB) for as long as it stays connected.
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
	gotA := make(chan struct{})
	be := loopback.Serve(t, func(i int, c net.Conn) {
		br := bufio.NewReader(c)
		for j := range 2 { // GET a, then GET b
			if _, err := readCommand(br); err != nil {
				return
			}
			if j == 0 {
				close(gotA)
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
	select { // a's request goes first
	case <-gotA:
	case <-time.After(10 * time.Second):
		t.Fatal("the server got no GET a")
	}
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

// A client that reads is not cut off when the replies queued behind a slow one all complete at
// once: here 600 replies of 64 KB (38 MB) wait behind a request its server answers after 500 ms,
// and reach the client when it does.
func TestReadingClientNotCutOffAfterHeadOfLine(t *testing.T) {
	val := strings.Repeat("x", 64<<10)
	handle := func(conn, n int, args []string) string {
		if args[1] == "slow" {
			time.Sleep(500 * time.Millisecond)
			return bulk("s")
		}
		return bulk(val)
	}
	a, b := startFakeRedis(t, handle), startFakeRedis(t, handle)
	addr, _, pc := startFakePoolConfig(t, "  server_connections: 1\n", a, b)
	placer := twemproxy.NewPlacer(pc, nil)
	slowSrv := pc.Servers[placer.Place([]byte("slow"))].Addr
	var fast []string
	for i := 0; len(fast) < 600; i++ {
		k := fmt.Sprintf("k%d", i)
		if pc.Servers[placer.Place([]byte(k))].Addr != slowSrv {
			fast = append(fast, k)
		}
	}
	c := dialResp(t, addr)
	got := pipeline(t, c, gets(append([]string{"slow"}, fast...)...))
	if got[0] != "$s" {
		t.Fatalf("GET slow = %q", got[0])
	}
	for i, g := range got[1:] {
		if g != "$"+val {
			t.Fatalf("reply %d: %d bytes, want %d", i+1, len(g), len(val)+1)
		}
	}
}

// A client that reads more slowly than its server answers is not cut off either, however large
// the replies it has pipelined: here four of 40 MB, read 64 KB at a time.
func TestSlowReadingClientNotCutOff(t *testing.T) {
	huge := strings.Repeat("h", 40<<20)
	be := startFakeRedis(t, func(conn, n int, args []string) string { return bulk(huge) })
	addr, srv := startFakePool(t, "  server_connections: 1\n", be)
	c := dialResp(t, addr)
	_ = c.c.SetDeadline(time.Now().Add(60 * time.Second))
	keys := numbered("huge", 4)
	var b strings.Builder
	for _, k := range keys {
		b.WriteString(encodeCmd("GET", k))
	}
	if _, err := io.WriteString(c.c, b.String()); err != nil {
		t.Fatal(err)
	}
	r := bufio.NewReaderSize(&slowReader{r: c.c, chunk: 64 << 10, pause: time.Millisecond}, 64<<10)
	for i := range keys {
		if g := readReplyErr(r); g != "$"+huge {
			t.Fatalf("reply %d: %.40q (%d bytes), want %d; client errors: %d", i, g, len(g), len(huge)+1,
				srv.Snapshot()[0].ClientErr)
		}
	}
}

// slowReader reads at most chunk bytes at a time from r, pausing before each read.
type slowReader struct {
	r     io.Reader
	chunk int
	pause time.Duration
}

func (s *slowReader) Read(b []byte) (int, error) {
	time.Sleep(s.pause)
	return s.r.Read(b[:min(len(b), s.chunk)])
}

// Complete replies held behind an unanswered request count toward the replies a client has not
// taken: its reader stops taking requests once they reach the limit (1 MB), instead of going on
// to 1024 requests in flight. Here the head waits on one server while 64 KB replies pile up from
// the other, for 1000 GETs with 1 KB keys (16 to a read), each sent once the proxy has read the
// previous one's reply (its server's responses counter) so that the replies keep up with the
// requests however loaded the machine: requests whose replies are still on their way do not count
// toward the limit, and a reader that raced ahead of them would take more than the bound, by the
// timing of the run. Once a reply does not come within a second the reader has stopped, and the
// rest are sent one a millisecond.
func TestReadyRepliesStopReader(t *testing.T) {
	val := strings.Repeat("x", 64<<10)
	release := make(chan struct{})
	var releaseOnce sync.Once
	defer releaseOnce.Do(func() { close(release) })
	var fastGets atomic.Int64
	handle := func(conn, n int, args []string) string {
		if args[1] == "slow" {
			<-release
			return bulk("s")
		}
		fastGets.Add(1)
		return bulk(val)
	}
	a, b := startFakeRedis(t, handle), startFakeRedis(t, handle)
	addr, srv, pc := startFakePoolConfig(t, "  server_connections: 1\n", a, b)
	placer := twemproxy.NewPlacer(pc, nil)
	slowSrv := pc.Servers[placer.Place([]byte("slow"))].Addr
	pad := strings.Repeat("k", 1<<10)
	var fast []string
	for i := 0; len(fast) < 1000; i++ {
		k := fmt.Sprintf("%s%d", pad, i)
		if pc.Servers[placer.Place([]byte(k))].Addr != slowSrv {
			fast = append(fast, k)
		}
	}
	c := dialResp(t, addr)
	_ = c.c.SetDeadline(time.Now().Add(30 * time.Second))
	sent := make(chan struct{})
	answered := func() (n int64) { // replies the proxy read from the fast server
		for _, ss := range srv.Snapshot()[0].Servers {
			if ss.Addr != slowSrv {
				n += ss.Responses
			}
		}
		return n
	}
	go func() {
		defer close(sent)
		if _, err := io.WriteString(c.c, encodeCmd("GET", "slow")); err != nil {
			return
		}
		lockstep := true
		for i, k := range fast {
			if _, err := io.WriteString(c.c, encodeCmd("GET", k)); err != nil {
				return
			}
			for deadline := time.Now().Add(time.Second); lockstep && answered() <= int64(i); time.Sleep(100 * time.Microsecond) {
				lockstep = time.Now().Before(deadline)
			}
			if !lockstep {
				time.Sleep(time.Millisecond)
			}
		}
	}()
	<-sent // the reader had time to take them all, if it does
	// The bound: 1 MB of replies (16), plus the requests of the read that crossed it (16) and of
	// the batch being dispatched; well under the 1024 requests in flight the reader is otherwise
	// allowed.
	n := fastGets.Load()
	t.Logf("the reader took %d requests", n)
	if n < 16 || n > 100 {
		t.Fatalf("the reader took %d requests while their replies waited behind the slow one", n)
	}
	releaseOnce.Do(func() { close(release) })
	if g := readReplyErr(c.r); g != "$s" {
		t.Fatalf("GET slow = %.40q", g)
	}
	for i := range fast {
		if g := readReplyErr(c.r); g != "$"+val {
			t.Fatalf("reply %d: %.40q (%d bytes), want %d", i+1, g, len(g), len(val)+1)
		}
	}
}

// The bound on a server connection's output counts the batch being written too: here the server
// reads slowly (8 KB every 5 ms, at most 1.6 MB/s, so that the queue fills even when the proxy runs
// slowly under -race), so a flush writing a few megabytes lasts while the buffer fills again, and
// one client sends SETs of 16 KB.
func TestSlowServerOutputBounded(t *testing.T) {
	stop := make(chan struct{})
	t.Cleanup(func() { close(stop) })
	slow := loopback.Serve(t, func(i int, c net.Conn) {
		buf := make([]byte, 8<<10)
		for {
			select {
			case <-stop:
				return
			case <-time.After(5 * time.Millisecond):
			}
			if _, err := c.Read(buf); err != nil {
				return
			}
		}
	})
	addr, srv, _ := twemproxytest.StartPool(t, "r", true, "  server_connections: 1\n", []string{slow},
		twemproxy.Protocols{Redis: &redis.Protocol{}})
	cmd := encodeCmd("SET", "k", strings.Repeat("v", 16<<10))
	c := dialResp(t, addr)
	go func() {
		for range 4000 {
			if _, err := io.WriteString(c.c, cmd); err != nil {
				return
			}
		}
	}()
	// The bound: the limit (4 MB) plus one batch of 64 requests.
	checkServerQueue(t, srv, 4<<20+64*(16<<10+64), 3*time.Second)
}
