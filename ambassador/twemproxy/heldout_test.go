package twemproxy_test

import (
	"bufio"
	"bytes"
	"fmt"
	"io"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/podblocks/podblocks/ambassador/memcache"
	"github.com/podblocks/podblocks/ambassador/redis"
	"github.com/podblocks/podblocks/ambassador/twemproxy"
	"github.com/podblocks/podblocks/ambassador/twemproxy/twemproxytest"
	"github.com/podblocks/podblocks/internal/await"
)

// A client that pipelines many small requests has at most MaxPending of them in flight, however
// many one read brings: the reader counts them one by one. The old code looked once per read, so
// one read of 16 KiB of "get k" put over 2000 in flight (each of whose replies can be large); the
// rest of such a read, complete requests no event brings back, is read once there is space, and
// every request is answered in order.
func TestPipelinedRequestsInFlightBounded(t *testing.T) {
	be := quitBackend(t, quitCases[0])
	const n = 3000
	for _, mode := range clientModes {
		addr, srv, _ := twemproxytest.StartPool(t, "q", false, "", []string{be.Addr}, twemproxy.Protocols{Memcache: &memcache.Protocol{}}, mode.opts...)
		inFlight := func() int64 {
			ss := srv.Snapshot()[0].Servers[0]
			return ss.InQueue + ss.OutQueue
		}
		if err := be.Pause(); err != nil {
			t.Skipf("cannot pause memcached: %v", err)
		}
		c, err := net.DialTimeout("tcp", addr, 5*time.Second)
		if err != nil {
			t.Fatal(err)
		}
		_ = c.SetDeadline(time.Now().Add(60 * time.Second))
		if _, err := io.WriteString(c, strings.Repeat("get k\r\n", n)); err != nil {
			t.Fatal(err)
		}
		await.True(t, "requests in flight", 10*time.Second, func() bool { return inFlight() >= twemproxy.MaxPending })
		// Watch for a while: the old code went past the bound within the same read.
		for end := time.Now().Add(time.Second); time.Now().Before(end); time.Sleep(await.Interval) {
			if got := inFlight(); got > twemproxy.MaxPending {
				t.Fatalf("%s clients: %d requests in flight, want at most %d", mode.name, got, twemproxy.MaxPending)
			}
		}
		if err := be.Resume(); err != nil {
			t.Fatal(err)
		}
		want := strings.Repeat("END\r\n", n)
		got := make([]byte, len(want))
		if _, err := io.ReadFull(c, got); err != nil || string(got) != want {
			t.Fatalf("%s clients: read %d bytes (error %v) of the %d replies, want every one, in order", mode.name, len(bytes.TrimRight(got, "\x00")), err, n)
		}
		c.Close()
	}
}

// A reply larger than any fixed bound on what may wait for a client reaches a client that reads
// it: one redis reply can be 512 MB, and nutcracker, like redis for its normal clients, serves it.
// A hard limit of 256 MB waiting per client (bf60567) cut such a client off with no reply, at
// every retry.
func TestLargeReplyServed(t *testing.T) {
	be := quitBackend(t, quitCases[1])
	const size = 300 << 20
	value := bytes.Repeat([]byte("y"), size)
	if out, werr, rerr := twemproxytest.SendAndRead(t, be.Addr, []byte(encodeCmd("SET", "huge", string(value))+encodeCmd("QUIT"))); string(out) != "+OK\r\n+OK\r\n" || werr != nil || rerr != nil {
		t.Fatalf("SET to redis-server: read %q (error %v); the write: %v", out, rerr, werr)
	}
	want := fmt.Sprintf("$%d\r\n", size)
	for _, mode := range clientModes {
		addr, _, _ := twemproxytest.StartPool(t, "q", true, "", []string{be.Addr}, twemproxy.Protocols{Redis: &redis.Protocol{}}, mode.opts...)
		c, err := net.DialTimeout("tcp", addr, 5*time.Second)
		if err != nil {
			t.Fatal(err)
		}
		_ = c.SetDeadline(time.Now().Add(60 * time.Second))
		if _, err := io.WriteString(c, encodeCmd("GET", "huge")); err != nil {
			t.Fatal(err)
		}
		r := bufio.NewReaderSize(c, 1<<20)
		head, err := r.ReadString('\n')
		if err != nil || head != want {
			t.Fatalf("%s clients: the reply began %q (error %v), want %q", mode.name, head, err, want)
		}
		got := make([]byte, size+2)
		if n, err := io.ReadFull(r, got); err != nil {
			t.Fatalf("%s clients: read %d of the value's %d bytes: %v", mode.name, n, size, err)
		}
		if !bytes.Equal(got[:size], value) || string(got[size:]) != "\r\n" {
			t.Fatalf("%s clients: the value came back changed", mode.name)
		}
		c.Close()
	}
}

// storeBig stores a value of 900 KB under "big" through the memcache pool at addr, and returns it.
func storeBig(t *testing.T, addr string) []byte {
	t.Helper()
	value := bytes.Repeat([]byte("v"), 900<<10)
	if out, werr, rerr := twemproxytest.SendAndRead(t, addr, fmt.Appendf(nil, "set big 0 0 %d\r\n%s\r\nquit\r\n", len(value), value)); string(out) != "STORED\r\n" || werr != nil || rerr != nil {
		t.Fatalf("set: read %q (error %v); the write: %v", out, rerr, werr)
	}
	return value
}
