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

// A client that pipelines GETs of large values and takes its replies more slowly than they come is
// closed as soon as more than MaxHeldOut of them wait to be written, and the proxy lets them go,
// however it reads: the old code held every reply of its requests in flight for as long as it
// took some of them (here with the client write timeout off; measured with 2000 GETs of 900 KB
// and a client that takes nothing: 3.3 GB of RSS for 5 s, where nutcracker held 1.8 GB for as
// long as the client stayed), all of the 512 MB here. Other clients are served.
func TestSlowClientHeldOutBounded(t *testing.T) {
	be := quitBackend(t, quitCases[0])
	for _, mode := range clientModes {
		opts := append([]twemproxy.Option{twemproxy.WithClientWriteTimeout(0)}, mode.opts...)
		addr, srv, _ := twemproxytest.StartPool(t, "q", false, "", []string{be.Addr}, twemproxy.Protocols{Memcache: &memcache.Protocol{}}, opts...)
		value := storeBig(t, addr)
		c, err := net.DialTimeout("tcp", addr, 5*time.Second)
		if err != nil {
			t.Fatal(err)
		}
		if err := c.(*net.TCPConn).SetReadBuffer(4096); err != nil {
			t.Fatal(err)
		}
		n := 2 * twemproxy.MaxHeldOut / len(value)
		if _, err := io.WriteString(c, strings.Repeat("get big\r\n", n)); err != nil {
			t.Fatal(err)
		}
		// The client takes 4 KiB every 100 ms: it makes progress, so that no stall ends it.
		readerDone := make(chan struct{})
		go func() {
			defer close(readerDone)
			buf := make([]byte, 4096)
			for {
				time.Sleep(100 * time.Millisecond)
				if _, err := c.Read(buf); err != nil {
					return
				}
			}
		}()
		most := 0
		await.True(t, "the client closed", 60*time.Second, func() bool {
			most = max(most, twemproxy.MostUnwritten(srv, "q"))
			return srv.Snapshot()[0].ClientErr > 0
		})
		c.Close()
		<-readerDone
		// One drain of replies may go past the bound before it is checked.
		const slack = 16 << 20
		if most > twemproxy.MaxHeldOut+slack {
			t.Errorf("%s clients: a slow client of %d MB of replies had %d MB of them waiting, want at most %d MB",
				mode.name, n*len(value)>>20, most>>20, (twemproxy.MaxHeldOut+slack)>>20)
		}
		// Another client is served.
		o, err := net.DialTimeout("tcp", addr, 5*time.Second)
		if err != nil {
			t.Fatal(err)
		}
		_ = o.SetDeadline(time.Now().Add(30 * time.Second))
		if _, err := io.WriteString(o, "get big\r\n"); err != nil {
			t.Fatal(err)
		}
		line, err := bufio.NewReader(o).ReadString('\n')
		if err != nil || line != fmt.Sprintf("VALUE big 0 %d\r\n", len(value)) {
			t.Fatalf("%s clients: another client read %q, %v", mode.name, line, err)
		}
		o.Close()
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
