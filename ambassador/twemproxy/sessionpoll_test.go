package twemproxy_test

import (
	"bufio"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"runtime"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/podblocks/podblocks/ambassador/redis"
	"github.com/podblocks/podblocks/ambassador/twemproxy"
	"github.com/podblocks/podblocks/ambassador/twemproxy/twemproxytest"
	"github.com/podblocks/podblocks/internal/await"
	"github.com/podblocks/podblocks/internal/loopback"
)

// Server replies are read in the pool's poller (Linux), which keeps the start of a reply that is
// not all there for the next read and gives a session whose reply is large and partial back to
// its goroutine.

// splitReplies serves GET v<n> with n bytes, writing the reply stream in pieces of 1 to chunk
// bytes, now and then pausing between two.
func splitReplies(t *testing.T, chunk int) string {
	return loopback.Serve(t, func(conn int, c net.Conn) {
		rng := rand.New(rand.NewPCG(uint64(chunk), uint64(conn)))
		br := bufio.NewReader(c)
		var out []byte
		for {
			args, err := readCommand(br)
			if err != nil {
				return
			}
			n, _ := strconv.Atoi(strings.TrimPrefix(args[1], "v"))
			out = append(out, bulk(value(args[1], n))...)
			if br.Buffered() > 0 {
				continue
			}
			for len(out) > 0 {
				k := min(len(out), 1+rng.IntN(chunk))
				if _, err := c.Write(out[:k]); err != nil {
					return
				}
				out = out[k:]
				if rng.IntN(8) == 0 {
					time.Sleep(50 * time.Microsecond)
				}
			}
			out = out[:0]
		}
	})
}

// value is key's value of n bytes.
func value(key string, n int) string {
	return strings.Repeat(key[len(key)-1:], n)
}

// Replies that arrive in pieces of any size, small ones and ones larger than a read, reach their
// clients whole and in order.
func TestRepliesSplitAcrossReads(t *testing.T) {
	for _, chunk := range []int{1, 7, 300, 5000, 40000} {
		t.Run(fmt.Sprint(chunk), func(t *testing.T) {
			addr, _, _ := twemproxytest.StartPool(t, "r", true, "  server_connections: 1\n",
				[]string{splitReplies(t, chunk)}, twemproxy.Protocols{Redis: &redis.Protocol{}})
			vmax := 40000
			if chunk < 300 {
				vmax = 300
			}
			errs := make(chan error, 4)
			for i := range 4 {
				c := dialResp(t, addr)
				go func() {
					rng := rand.New(rand.NewPCG(uint64(i), uint64(chunk)))
					for range 5 {
						var keys []string
						for range 1 + rng.IntN(40) {
							keys = append(keys, fmt.Sprintf("v%d", rng.IntN(vmax)))
						}
						if err := checkGets(c, keys); err != nil {
							errs <- err
							return
						}
					}
					errs <- nil
				}()
			}
			for range 4 {
				if err := <-errs; err != nil {
					t.Error(err)
				}
			}
		})
	}
}

// checkGets pipelines GETs of keys on c and checks each reply.
func checkGets(c *respClient, keys []string) error {
	_ = c.c.SetDeadline(time.Now().Add(30 * time.Second))
	var b strings.Builder
	for _, k := range keys {
		b.WriteString(encodeCmd("GET", k))
	}
	go func() { _, _ = io.WriteString(c.c, b.String()) }()
	for _, k := range keys {
		n, _ := strconv.Atoi(k[1:])
		if g := readReplyErr(c.r); g != "$"+value(k, n) {
			return fmt.Errorf("GET %s: %d bytes %.40q, want %d bytes", k, len(g), g, n+1)
		}
	}
	return nil
}

// The poller reads the server sessions' replies once they are idle, instead of a goroutine per
// session waking for each batch of replies (the point of it: fewer wake-ups per request).
func TestPollerReadsServerReplies(t *testing.T) {
	if runtime.GOOS != "linux" {
		t.Skip("the poller is Linux-only")
	}
	addr, srv := startFakePool(t, "  server_connections: 2\n", startFakeRedis(t, echoLen), startFakeRedis(t, echoLen))
	for i := range 6 {
		c := dialResp(t, addr)
		if g := c.do(t, "GET", fmt.Sprint("k", i)); g != fmt.Sprint("$v-k", i) {
			t.Fatalf("GET: %q", g)
		}
	}
	await.True(t, "every server session read by the poller", 10*time.Second, func() bool {
		polled, total := twemproxy.PolledSessions(srv, "r")
		return total > 0 && polled == total
	})
}

// awaitPolledOne waits, on Linux, until the poller reads the one client or server session of pool
// r that count (twemproxy.PolledClients or twemproxy.PolledSessions) finds.
func awaitPolledOne(t *testing.T, what string, srv *twemproxy.Server, count func(*twemproxy.Server, string) (polled, total int)) {
	t.Helper()
	if runtime.GOOS != "linux" {
		return
	}
	await.True(t, what+" read by the poller", 10*time.Second, func() bool {
		polled, total := count(srv, "r")
		return polled == 1 && total == 1
	})
}

// A request the server never answers times out after the pool's timeout also while the poller
// reads the session: its timer hands the session back to its goroutine, whose read deadline has
// passed.
func TestTimeoutWhilePolled(t *testing.T) {
	be := startFakeRedis(t, func(conn, n int, args []string) string {
		if args[1] == "hang" {
			return "hang"
		}
		return bulk("v-" + args[1])
	})
	addr, srv := startFakePool(t, "  timeout: 300\n  server_connections: 1\n", be)
	c := dialResp(t, addr)
	if g := c.do(t, "GET", "a"); g != "$v-a" {
		t.Fatalf("GET a: %q", g)
	}
	awaitPolledOne(t, "the session", srv, twemproxy.PolledSessions)
	start := time.Now()
	_ = c.c.SetDeadline(time.Now().Add(10 * time.Second))
	if _, err := io.WriteString(c.c, encodeCmd("GET", "hang")); err != nil {
		t.Fatal(err)
	}
	g := readReplyErr(c.r)
	took := time.Since(start)
	if !strings.HasPrefix(g, "-") || !strings.Contains(strings.ToLower(g), "timed out") {
		t.Fatalf("GET of a key the server never answers: %q after %v, want a timeout error", g, took)
	}
	if took < 250*time.Millisecond || took > 3*time.Second {
		t.Errorf("the timeout of 300 ms came after %v", took)
	}
	if n := srv.Snapshot()[0].Servers[0].ServerTimedout; n != 1 {
		t.Errorf("server_timedout = %d, want 1", n)
	}
}
