package twemproxy_test

import (
	"bufio"
	"io"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/podblocks/podblocks/ambassador/redis"
	"github.com/podblocks/podblocks/ambassador/twemproxy"
	"github.com/podblocks/podblocks/ambassador/twemproxy/twemproxytest"
	"github.com/podblocks/podblocks/internal/await"
	"github.com/podblocks/podblocks/internal/loopback"
)

// A server that resets its connection while a request is in flight is a server error (server_err,
// and the reset's message to the client), whether the poller or the session's goroutine reads the
// replies. Linux reports a socket's error to one read only: a poller that read the reset and left
// the goroutine to read again made it an end of stream (server_eof, "connection closed by
// server").
func TestServerResetIsAnError(t *testing.T) {
	be := loopback.Serve(t, func(conn int, c net.Conn) {
		br := bufio.NewReader(c)
		for {
			args, err := readCommand(br)
			if err != nil {
				return
			}
			if args[1] == "rst" {
				_ = c.(*net.TCPConn).SetLinger(0)
				c.Close()
				return
			}
			_, _ = io.WriteString(c, bulk("v-"+args[1]))
		}
	})
	addr, srv, _ := twemproxytest.StartPool(t, "r", true, "  server_connections: 1\n  auto_eject_hosts: false\n",
		[]string{be}, twemproxy.Protocols{Redis: &redis.Protocol{}})
	c := dialResp(t, addr)
	if g := c.do(t, "GET", "a"); g != "$v-a" {
		t.Fatalf("GET a = %q", g)
	}
	awaitPolledOne(t, "the session", srv, twemproxy.PolledSessions)
	g := c.do(t, "GET", "rst")
	if !strings.HasPrefix(g, "-") || !strings.Contains(g, "reset") {
		t.Errorf("GET rst = %q, want the reset as an error", g)
	}
	sv := srv.Snapshot()[0].Servers[0]
	if sv.ServerErr != 1 || sv.ServerEOF != 0 {
		t.Errorf("a reset counted as server_eof %d, server_err %d; want server_err 1", sv.ServerEOF, sv.ServerErr)
	}
}

// A client that resets its connection is counted as a client error (client_err), not as an end
// of stream, when the poller reads it too.
func TestClientResetIsAnError(t *testing.T) {
	addr, srv := startFakePool(t, "  server_connections: 1\n", startFakeRedis(t, echoLen))
	c := dialResp(t, addr)
	if g := c.do(t, "GET", "a"); g != "$v-a" {
		t.Fatalf("GET a = %q", g)
	}
	awaitPolledOne(t, "the client", srv, twemproxy.PolledClients)
	_ = c.c.(*net.TCPConn).SetLinger(0)
	c.c.Close()
	await.True(t, "the client's end counted", 10*time.Second, func() bool {
		ps := srv.Snapshot()[0]
		return ps.ClientEOF+ps.ClientErr > 0
	})
	if ps := srv.Snapshot()[0]; ps.ClientErr != 1 || ps.ClientEOF != 0 {
		t.Errorf("a client's reset counted as client_eof %d, client_err %d; want client_err 1", ps.ClientEOF, ps.ClientErr)
	}
}
