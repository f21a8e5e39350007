//go:build linux

package twemproxy_test

import (
	"net"
	"os"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/podblocks/podblocks/ambassador/twemproxy"
	"github.com/podblocks/podblocks/internal/await"
	"github.com/podblocks/podblocks/internal/freeport"
	"github.com/podblocks/podblocks/lifecycletest"
)

// keepalive reads SO_KEEPALIVE and TCP_KEEPIDLE (seconds) of conn.
func keepalive(t *testing.T, conn net.Conn) (on bool, idle int) {
	t.Helper()
	raw, err := conn.(syscall.Conn).SyscallConn()
	if err != nil {
		t.Fatal(err)
	}
	var v, i int
	var serr error
	if err := raw.Control(func(fd uintptr) {
		if v, serr = syscall.GetsockoptInt(int(fd), syscall.SOL_SOCKET, syscall.SO_KEEPALIVE); serr == nil {
			i, serr = syscall.GetsockoptInt(int(fd), syscall.IPPROTO_TCP, syscall.TCP_KEEPIDLE)
		}
	}); err != nil || serr != nil {
		t.Fatal(err, serr)
	}
	return v != 0, i
}

// A client connection gets SO_KEEPALIVE only in a pool with tcpkeepalive, with the kernel's
// timing (net.ipv4.tcp_keepalive_time), as nutcracker sets it: the old code gave every client
// connection Go's 15s keepalive. A reload that keeps the listener applies a new tcpkeepalive to
// the clients that connect after it.
func TestClientKeepaliveFollowsTCPKeepalive(t *testing.T) {
	b, err := os.ReadFile("/proc/sys/net/ipv4/tcp_keepalive_time")
	if err != nil {
		t.Skipf("kernel keepalive time unknown: %v", err)
	}
	kernelIdle, err := strconv.Atoi(strings.TrimSpace(string(b)))
	if err != nil {
		t.Fatal(err)
	}
	addrOn, addrOff := freeport.TCP(t), freeport.TCP(t)
	yml := func(offKeepalive bool) string {
		return "ka:\n  listen: " + addrOn + "\n  tcpkeepalive: true\n  servers:\n   - 127.0.0.1:1:1\n" +
			"plain:\n  listen: " + addrOff + "\n  tcpkeepalive: " + strconv.FormatBool(offKeepalive) + "\n  servers:\n   - 127.0.0.1:1:1\n"
	}
	srv, err := twemproxy.NewServer(parseConfig(t, yml(false)), bothProtocols)
	if err != nil {
		t.Fatal(err)
	}
	run := lifecycletest.StartReady(t, srv, 10*time.Second)
	// check dials the pool and checks the keepalive of the connection the pool accepted.
	check := func(pool, addr string, want bool) {
		t.Helper()
		c, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		var conns []net.Conn
		await.True(t, "the pool to accept the client", 10*time.Second, func() bool {
			conns = twemproxy.ClientConns(srv, pool)
			return len(conns) > 0
		})
		for _, conn := range conns {
			on, idle := keepalive(t, conn)
			if on != want || on && idle != kernelIdle {
				t.Errorf("pool %s: client keepalive %v, idle %ds; want %v, idle %ds (the kernel's)", pool, on, idle, want, kernelIdle)
			}
		}
		c.Close()
		await.True(t, "the pool to close the client", 10*time.Second, func() bool { return len(twemproxy.ClientConns(srv, pool)) == 0 })
	}
	check("ka", addrOn, true)
	check("plain", addrOff, false)
	if err := srv.Reload(parseConfig(t, yml(true))); err != nil {
		t.Fatal(err)
	}
	check("plain", addrOff, true)
	if err := run.Stop(10 * time.Second); err != nil {
		t.Fatal(err)
	}
}
