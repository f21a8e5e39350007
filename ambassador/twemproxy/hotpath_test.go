package twemproxy_test

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/podblocks/podblocks/ambassador/redis"
	"github.com/podblocks/podblocks/ambassador/twemproxy"
	"github.com/podblocks/podblocks/ambassador/twemproxy/twemproxytest"
	"github.com/podblocks/podblocks/internal/await"
	"github.com/podblocks/podblocks/internal/loopback"
	"github.com/podblocks/podblocks/internal/shardproc"
)

// fakeRedis is a scriptable redis backend: handle gets each command of each connection (its
// number, the command's number on it, the args) and returns the reply, or "" for none: "hang"
// sends nothing more on the connection, "close" closes it.
type fakeRedis struct {
	address string
	handle  func(conn, n int, args []string) string
}

func startFakeRedis(t testing.TB, handle func(conn, n int, args []string) string) *fakeRedis {
	t.Helper()
	f := &fakeRedis{handle: handle}
	f.address = loopback.Serve(t, f.serve)
	return f
}

func (f *fakeRedis) addr() string { return f.address }

func (f *fakeRedis) serve(conn int, c net.Conn) {
	br := bufio.NewReader(c)
	bw := bufio.NewWriter(c)
	hung := false
	for n := 0; ; n++ {
		args, err := readCommand(br)
		if err != nil {
			return
		}
		if hung {
			continue
		}
		switch reply := f.handle(conn, n, args); reply {
		case "hang":
			_ = bw.Flush()
			hung = true
		case "close":
			_ = bw.Flush()
			return
		default:
			bw.WriteString(reply)
			if br.Buffered() == 0 {
				if bw.Flush() != nil {
					return
				}
			}
		}
	}
}

func readCommand(br *bufio.Reader) ([]string, error) {
	line, err := br.ReadString('\n')
	if err != nil {
		return nil, err
	}
	n, err := strconv.Atoi(strings.TrimSpace(line[1:]))
	if err != nil || line[0] != '*' {
		return nil, fmt.Errorf("bad command %q", line)
	}
	args := make([]string, n)
	for i := range args {
		if line, err = br.ReadString('\n'); err != nil {
			return nil, err
		}
		l, _ := strconv.Atoi(strings.TrimSpace(line[1:]))
		buf := make([]byte, l+2)
		if _, err := io.ReadFull(br, buf); err != nil {
			return nil, err
		}
		args[i] = string(buf[:l])
	}
	return args, nil
}

func bulk(s string) string { return fmt.Sprintf("$%d\r\n%s\r\n", len(s), s) }

// bigValues answers GET k with k+big for keys starting with "big", and with "v-"+k otherwise.
func bigValues(big string) func(conn, n int, args []string) string {
	return func(conn, n int, args []string) string {
		if strings.HasPrefix(args[1], "big") {
			return bulk(args[1] + big)
		}
		return bulk("v-" + args[1])
	}
}

// pipeline sends every command at once and reads as many replies, as "$value", "-ERR ...", etc.
func pipeline(t *testing.T, c *respClient, cmds [][]string) []string {
	t.Helper()
	_ = c.c.SetDeadline(time.Now().Add(30 * time.Second))
	var b strings.Builder
	for _, args := range cmds {
		b.WriteString(encodeCmd(args...))
	}
	go func() { _, _ = io.WriteString(c.c, b.String()) }() // the replies may be large
	out := make([]string, len(cmds))
	for i := range out {
		out[i] = readReply(t, c.r)
	}
	return out
}

// readReply reads one reply: "$value", "-ERR ...", or for an array "*N $a $b ...".
func readReply(t *testing.T, r *bufio.Reader) string {
	t.Helper()
	line, err := r.ReadString('\n')
	if err != nil {
		t.Fatalf("reply: %v", err)
	}
	line = strings.TrimSuffix(line, "\r\n")
	switch line[0] {
	case '$':
		n, _ := strconv.Atoi(line[1:])
		if n < 0 {
			return "nil"
		}
		buf := make([]byte, n+2)
		if _, err := io.ReadFull(r, buf); err != nil {
			t.Fatal(err)
		}
		return "$" + string(buf[:n])
	case '*':
		n, _ := strconv.Atoi(line[1:])
		for range n {
			line += " " + readReply(t, r)
		}
	}
	return line
}

func encodeCmd(args ...string) string {
	var b strings.Builder
	fmt.Fprintf(&b, "*%d\r\n", len(args))
	for _, a := range args {
		b.WriteString(bulk(a))
	}
	return b.String()
}

func startFakePool(t *testing.T, extra string, backends ...*fakeRedis) (string, *twemproxy.Server) {
	addr, srv, _ := startFakePoolConfig(t, extra, backends...)
	return addr, srv
}

func startFakePoolConfig(t *testing.T, extra string, backends ...*fakeRedis) (string, *twemproxy.Server, *twemproxy.PoolConfig) {
	t.Helper()
	var addrs []string
	for _, b := range backends {
		addrs = append(addrs, b.addr())
	}
	return twemproxytest.StartPool(t, "r", true, extra, addrs, twemproxy.Protocols{Redis: &redis.Protocol{}})
}

func gets(keys ...string) [][]string {
	var cmds [][]string
	for _, k := range keys {
		cmds = append(cmds, []string{"GET", k})
	}
	return cmds
}

func numbered(prefix string, n int) []string {
	keys := make([]string, n)
	for i := range keys {
		keys[i] = fmt.Sprintf("%s%d", prefix, i)
	}
	return keys
}

// TestServerDiesMidPipeline: the server closes its connection after answering part of a
// pipelined batch; the client gets the answered replies, then an error for each request in
// flight (requests that reach the proxy later go to a new connection), in order, and its
// connection stays usable.
func TestServerDiesMidPipeline(t *testing.T) {
	be := startFakeRedis(t, func(conn, n int, args []string) string {
		if conn == 0 && n == 20 {
			return "close"
		}
		return bulk("v-" + args[1])
	})
	addr, _ := startFakePool(t, "  server_connections: 1\n", be)
	c := dialResp(t, addr)
	keys := numbered("k", 50)
	got := pipeline(t, c, gets(keys...))
	errs := 0
	for i, g := range got {
		switch {
		case i < 20 && g != "$v-"+keys[i]:
			t.Errorf("reply %d: %q, want the value", i, g)
		case strings.HasPrefix(g, "-ERR"):
			errs++
		case g != "$v-"+keys[i]:
			t.Errorf("reply %d: %q, want %s's value or an error", i, g, keys[i])
		}
	}
	if errs == 0 {
		t.Errorf("no request failed with the connection: %q", got[20:])
	}
	if g := c.do(t, "GET", "again"); g != "$v-again" {
		t.Errorf("after the server's restart: %q", g)
	}
}

// TestTimeoutMidBatch: the server answers part of a batch and then stops answering; the answered
// requests get their values, the rest a timeout error after the pool's timeout, in order.
func TestTimeoutMidBatch(t *testing.T) {
	be := startFakeRedis(t, func(conn, n int, args []string) string {
		if conn == 0 && n == 10 {
			return "hang"
		}
		return bulk("v-" + args[1])
	})
	addr, srv := startFakePool(t, "  timeout: 200\n", be)
	c := dialResp(t, addr)
	keys := numbered("k", 30)
	start := time.Now()
	got := pipeline(t, c, gets(keys...))
	took := time.Since(start)
	for i, g := range got {
		if i < 10 && g != "$v-"+keys[i] {
			t.Errorf("reply %d: %q, want the value", i, g)
		}
		if i >= 10 && !strings.Contains(g, "timed out") {
			t.Errorf("reply %d: %q, want a timeout", i, g)
		}
	}
	if took < 150*time.Millisecond || took > 10*time.Second {
		t.Errorf("batch took %v, want about the 200ms timeout", took)
	}
	if n := srv.Snapshot()[0].Servers[0].ServerTimedout; n != 1 {
		t.Errorf("server_timedout = %d, want 1", n)
	}
	if g := c.do(t, "GET", "again"); g != "$v-again" {
		t.Errorf("after the timeout: %q", g)
	}
}

// TestClientGoneWithRepliesPending: a client that pipelines requests and closes its connection
// before the replies come back costs nothing else: the replies are dropped, other clients are
// served, and no goroutine is left (goleak checks at the end).
func TestClientGoneWithRepliesPending(t *testing.T) {
	addr, srv, gone, _, release := pipelineBehindSlow(t, 200)
	await.True(t, "the requests to reach the proxy", 10*time.Second, func() bool {
		return srv.Snapshot()[0].Servers[0].Requests >= 1
	})
	gone.c.Close()
	time.Sleep(50 * time.Millisecond)
	release()
	await.True(t, "the dropped replies to be read", 10*time.Second, func() bool {
		return srv.Snapshot()[0].Servers[0].Responses == 201
	})
	c := dialResp(t, addr)
	if g := c.do(t, "GET", "x"); g != "$v-x" {
		t.Errorf("another client: %q", g)
	}
	await.True(t, "the closed client to be gone", 10*time.Second, func() bool {
		return srv.Snapshot()[0].ClientConnections == 1
	})
}

// TestSlowReaderLargeReplies: a client that pipelines many requests with large replies and reads
// them only afterwards (so the proxy's writes to it block) gets every reply, in order, while
// another client on the same server connection is served meanwhile.
func TestSlowReaderLargeReplies(t *testing.T) {
	big := strings.Repeat("x", 64<<10)
	be := startFakeRedis(t, bigValues(big))
	addr, _ := startFakePool(t, "  server_connections: 1\n", be)
	slow := dialResp(t, addr)
	keys := numbered("big", 200) // ~13 MB of replies
	var b strings.Builder
	for _, k := range keys {
		b.WriteString(encodeCmd("GET", k))
	}
	go func() { _, _ = io.WriteString(slow.c, b.String()) }()
	time.Sleep(200 * time.Millisecond) // let the proxy's buffers and the socket fill up
	other := dialResp(t, addr)
	for i := range 20 {
		k := fmt.Sprintf("o%d", i)
		if g := other.do(t, "GET", k); g != "$v-"+k {
			t.Fatalf("other client: %q", g)
		}
	}
	_ = slow.c.SetDeadline(time.Now().Add(30 * time.Second))
	for i, k := range keys {
		line, err := slow.r.ReadString('\n')
		if err != nil {
			t.Fatalf("reply %d: %v", i, err)
		}
		want := fmt.Sprintf("$%d\r\n", len(k)+len(big))
		if line != want {
			t.Fatalf("reply %d: %q, want %q", i, line, want)
		}
		buf := make([]byte, len(k)+len(big)+2)
		if _, err := io.ReadFull(slow.r, buf); err != nil {
			t.Fatal(err)
		}
		if string(buf[:len(k)]) != k {
			t.Fatalf("reply %d is for %q, want %q", i, buf[:len(k)], k)
		}
	}
}

// TestMultiKeyShardDiesMidFlight: an MGET split over two servers where one closes its connection
// with the fragment in flight: the reply is an error, the next MGET is answered.
func TestMultiKeyShardDiesMidFlight(t *testing.T) {
	var closed sync.Once
	mk := func(name string, die bool) *fakeRedis {
		return startFakeRedis(t, func(conn, n int, args []string) string {
			if die && args[0] == "MGET" {
				drop := false
				closed.Do(func() { drop = true })
				if drop {
					return "close"
				}
			}
			var b strings.Builder
			fmt.Fprintf(&b, "*%d\r\n", len(args)-1)
			for _, k := range args[1:] {
				b.WriteString(bulk(name + "-" + k))
			}
			return b.String()
		})
	}
	a, b := mk("a", false), mk("b", true)
	addr, _, pc := startFakePoolConfig(t, "", a, b)
	c := dialResp(t, addr)
	pl := twemproxy.NewPlacer(pc, nil)
	var keys []string
	var on [2]int
	for i := 0; len(keys) < 20; i++ {
		k := fmt.Sprintf("k%d", i)
		if s := pl.Place([]byte(k)); on[s] < 10 {
			on[s]++
			keys = append(keys, k)
		}
	}
	mget := append([]string{"MGET"}, keys...)
	if got := pipeline(t, c, [][]string{mget})[0]; !strings.HasPrefix(got, "-ERR") {
		t.Errorf("MGET with a shard gone: %q, want an error", got)
	}
	got := pipeline(t, c, [][]string{mget})[0]
	if !strings.HasPrefix(got, "*20 ") || !strings.Contains(got, " $a-") || !strings.Contains(got, " $b-") {
		t.Fatalf("next MGET: %q, want 20 values from both shards", got)
	}
	for i, v := range strings.Fields(got)[1:] {
		if !strings.HasSuffix(v, "-"+keys[i]) {
			t.Errorf("MGET value %d: %q, want %s's", i, v, keys[i])
		}
	}
}

// nilRedis answers every GET of the form "*2 $3 GET $n key" (five lines) with a nil reply, with
// no allocation per request, so that a benchmark's allocations are the proxy's.
func nilRedis(tb testing.TB) string {
	return loopback.Serve(tb, func(_ int, c net.Conn) {
		buf := make([]byte, 64<<10)
		out := make([]byte, 0, 64<<10)
		lines := 0
		for {
			n, err := c.Read(buf)
			if err != nil {
				return
			}
			for _, ch := range buf[:n] {
				if ch == '\n' {
					if lines++; lines == 5 {
						lines = 0
						out = append(out, "$-1\r\n"...)
					}
				}
			}
			if _, err := c.Write(out); err != nil {
				return
			}
			out = out[:0]
		}
	})
}

// BenchmarkProxyPipelined: one client sends batches of 16 pipelined GETs through the proxy to
// two servers and reads the 16 replies; an op is one batch. allocs/op is the proxy's hot path.
func BenchmarkProxyPipelined(b *testing.B) {
	roundTrip := startPipelined(b)
	b.ReportAllocs()
	for b.Loop() {
		roundTrip()
	}
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*16), "ns/request")
}

// The hot path allocates nothing per request once warm: a pipelined batch of GETs through the
// poller (client read, routing, server write, reply read, client write) makes no allocation. The
// poller's wait, passed as a method value per round, allocated once per round (twice per batch).
func TestPipelinedBatchAllocatesNothing(t *testing.T) {
	if raceEnabled {
		t.Skip("under the race detector sync.Pool drops items at random")
	}
	roundTrip := startPipelined(t)
	for range 200 {
		roundTrip()
	}
	if n := testing.AllocsPerRun(1000, roundTrip); n >= 0.5 {
		t.Fatalf("%.2f allocations per batch of 16 pipelined GETs, want 0", n)
	}
}

// startPipelined starts a pool on two servers that answer every GET with a nil reply and returns
// a round trip of one client's batch of 16 pipelined GETs through it.
func startPipelined(tb testing.TB) (roundTrip func()) {
	addr := startRedisPool(tb, []string{nilRedis(tb), nilRedis(tb)})
	c, err := net.Dial("tcp", addr)
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { c.Close() })
	var batch []byte
	for i := range 16 {
		batch = append(batch, encodeCmd("GET", fmt.Sprintf("key:%d", i))...)
	}
	replies := make([]byte, 16*len("$-1\r\n"))
	return func() {
		if _, err := c.Write(batch); err != nil {
			tb.Fatal(err)
		}
		if _, err := io.ReadFull(c, replies); err != nil {
			tb.Fatal(err)
		}
	}
}

// startRedisPool runs a redis pool sharding over backends for the length of tb, a benchmark's too
// (twemproxytest.StartPool takes a test's), and returns its address. opts go to NewServer.
func startRedisPool(tb testing.TB, backends []string, opts ...twemproxy.Option) string {
	port, err := shardproc.FreePort()
	if err != nil {
		tb.Fatal(err)
	}
	addr := fmt.Sprintf("127.0.0.1:%d", port)
	yml := fmt.Sprintf("r:\n  listen: %s\n  redis: true\n  servers:\n", addr)
	for _, be := range backends {
		yml += fmt.Sprintf("   - %s:1\n", be)
	}
	cfg, err := twemproxy.Parse([]byte(yml))
	if err != nil {
		tb.Fatal(err)
	}
	srv, err := twemproxy.NewServer(cfg, twemproxy.Protocols{Redis: &redis.Protocol{}}, opts...)
	if err != nil {
		tb.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- srv.Run(ctx) }()
	tb.Cleanup(func() { cancel(); <-done })
	<-srv.Ready()
	return addr
}

// TestServerStatsCountRequests: a server's Requests and RequestBytes count what was sent to it,
// OutQueue the requests sent and not answered yet, and both settle once the replies are read.
func TestServerStatsCountRequests(t *testing.T) {
	_, srv, c, sent, release := pipelineBehindSlow(t, 99)
	await.True(t, "100 requests sent and awaiting replies", 10*time.Second, func() bool {
		s := srv.Snapshot()[0].Servers[0]
		return s.Requests == 100 && s.OutQueue == 100 && s.RequestBytes == int64(sent)
	})
	release()
	for range 100 {
		readReply(t, c.r)
	}
	await.True(t, "the replies to settle the out queue", 10*time.Second, func() bool {
		s := srv.Snapshot()[0].Servers[0]
		return s.Responses == 100 && s.OutQueue == 0 && s.Requests == 100
	})
}

// TestTimeoutCountsFromEachRequest: the server timeout runs from each request's own send time,
// also when the deadline set for an earlier request on the same connection passes while the
// reader waits for a later one's reply (the reader keeps that deadline and moves it on when it
// fires).
func TestTimeoutCountsFromEachRequest(t *testing.T) {
	be := startFakeRedis(t, func(conn, n int, args []string) string {
		time.Sleep(400 * time.Millisecond) // "a" is answered 400 ms after it was sent, "b" 500 ms after
		return bulk("v-" + args[1])
	})
	addr, srv := startFakePool(t, "  timeout: 600\n", be)
	a, b := dialResp(t, addr), dialResp(t, addr)
	start := time.Now()
	if _, err := io.WriteString(a.c, encodeCmd("GET", "a")); err != nil {
		t.Fatal(err)
	}
	time.Sleep(300 * time.Millisecond)
	if _, err := io.WriteString(b.c, encodeCmd("GET", "b")); err != nil {
		t.Fatal(err)
	}
	if g := readReply(t, a.r); g != "$v-a" {
		t.Errorf("a: %q", g)
	}
	if g := readReply(t, b.r); g != "$v-b" {
		t.Errorf("b, answered %v after a was sent (a's deadline passed meanwhile): %q", time.Since(start), g)
	}
	if n := srv.Snapshot()[0].Servers[0].ServerTimedout; n != 0 {
		t.Errorf("server_timedout = %d, want 0", n)
	}
}

// pipelineBehindSlow starts a pool on a server that holds its reply to GET slow until release is
// called (or the test ends), and sends GET slow and then GETs of n other keys on one client. It
// returns the pool's address and server, the client and the bytes it sent.
func pipelineBehindSlow(t *testing.T, n int) (addr string, srv *twemproxy.Server, c *respClient, sent int, release func()) {
	t.Helper()
	held := make(chan struct{})
	var once sync.Once
	release = func() { once.Do(func() { close(held) }) }
	be := startFakeRedis(t, func(_, _ int, args []string) string {
		if args[1] == "slow" {
			<-held
		}
		return bulk("v-" + args[1])
	})
	t.Cleanup(release)
	addr, srv = startFakePool(t, "", be)
	c = dialResp(t, addr)
	var b strings.Builder
	b.WriteString(encodeCmd("GET", "slow"))
	for _, k := range numbered("k", n) {
		b.WriteString(encodeCmd("GET", k))
	}
	if _, err := io.WriteString(c.c, b.String()); err != nil {
		t.Fatal(err)
	}
	return addr, srv, c, b.Len(), release
}
