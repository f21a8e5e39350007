//go:build linux

package twemproxy_test

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/podblocks/podblocks/ambassador/memcache"
	"github.com/podblocks/podblocks/ambassador/twemproxy"
	"github.com/podblocks/podblocks/ambassador/twemproxy/twemproxytest"
	"github.com/podblocks/podblocks/internal/await"
)

// A client that sent quit leaves the poller's epoll set as soon as the proxy has read the quit,
// while its last replies are still being written, and stays out of it while it lingers: its
// events (what it sends after quit, its close) no longer wake the poller, and it gets every reply
// and then the end of the stream. The old code left its socket in the set until the connection
// was closed: through the writing of its replies, however long the client took to read them, and
// through the linger.
func TestQuitLeavesEpollSet(t *testing.T) {
	be := quitBackend(t, quitCases[0])
	addr, srv, _ := twemproxytest.StartPool(t, "q", false, "", []string{be.Addr}, twemproxy.Protocols{Memcache: &memcache.Protocol{}})
	value := storeBig(t, addr)
	// A small receive buffer, so that the reply waits in the proxy while the client does not read.
	d := net.Dialer{Timeout: 5 * time.Second, Control: func(_, _ string, rc syscall.RawConn) error {
		var serr error
		err := rc.Control(func(fd uintptr) { serr = syscall.SetsockoptInt(int(fd), syscall.SOL_SOCKET, syscall.SO_RCVBUF, 4096) })
		if err == nil {
			err = serr
		}
		return err
	}}
	c, err := d.DialContext(context.Background(), "tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(30 * time.Second))
	br := bufio.NewReader(c)
	client := func() twemproxy.PollerClient {
		t.Helper()
		cs, err := twemproxy.PollerClients(srv, "q")
		if err != nil || len(cs) != 1 {
			t.Fatalf("the pool's clients: %+v, %v; want one", cs, err)
		}
		return cs[0]
	}
	if _, err := io.WriteString(c, "get a\r\n"); err != nil {
		t.Fatal(err)
	}
	if line, err := br.ReadString('\n'); line != "END\r\n" || err != nil {
		t.Fatalf("get a: read %q, %v", line, err)
	}
	await.True(t, "the client in the epoll set", 10*time.Second, func() bool { return client().InEpollSet })
	const gets = 8 // more than the sockets' buffers hold
	if _, err := io.WriteString(c, strings.Repeat("get big\r\n", gets)+"quit\r\n"); err != nil {
		t.Fatal(err)
	}
	var left twemproxy.PollerClient
	await.True(t, "the client out of the epoll set with replies still to write", 10*time.Second, func() bool {
		left = client()
		return !left.InEpollSet && left.Unwritten > 0 || left.Closed
	})
	if left.Closed {
		t.Fatal("the client's connection was closed before it read its replies")
	}
	// What it sends while it lingers is read and dropped, and it stays out of the set.
	if _, err := io.WriteString(c, strings.Repeat("get a\r\n", 100)); err != nil {
		t.Fatal(err)
	}
	want := strings.Repeat(fmt.Sprintf("VALUE big 0 %d\r\n%s\r\nEND\r\n", len(value), value), gets)
	out, err := io.ReadAll(br)
	if err != nil || string(out) != want {
		t.Fatalf("read %d bytes (error %v), want the %d of the replies and the end of the stream", len(out), err, len(want))
	}
	if cs, err := twemproxy.PollerClients(srv, "q"); err != nil || len(cs) == 1 && cs[0].InEpollSet && !cs[0].Closed {
		t.Errorf("a lingering client is in the epoll set: %+v, %v", cs, err)
	}
}
